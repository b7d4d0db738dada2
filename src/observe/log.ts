/**
 * The audit log: one JSON object per line on stdout (journald keeps it), one line per event
 * (listening, connection accepted, handshake ok or failed, closed, refused, reload). The least
 * severe level written comes from `QTLS_LOG_LEVEL` (DEBUG, INFO, WARN, ERROR) or the config;
 * `log_format = "text"` writes the same fields as `time LEVEL event key=value…` for people.
 *
 * Nothing secret is ever passed in: callers log names, subjects, serials and fingerprints. As a
 * second line of defence, fields whose names look like secrets are replaced before writing.
 */
import type { LogFormat, LogLevel } from "../config/types.ts";

const SEVERITY: Record<LogLevel, number> = { DEBUG: 10, INFO: 20, WARN: 30, ERROR: 40 };
const SECRET_FIELD = /(^|_)(pin|password|passphrase|secret|token|private_key|key_material)$/i;

/** Values a log field may hold. */
export type LogValue = string | number | boolean | null | undefined | LogValue[] | {
  [key: string]: LogValue;
};
export type LogFields = Record<string, LogValue>;

let threshold = SEVERITY[parseLevel(Deno.env.get("QTLS_LOG_LEVEL")) ?? "INFO"];
let sink: (line: string) => void = (line) => console.log(line);
let format: (record: LogFields) => string = (record) => JSON.stringify(record);
let context: LogFields = {};

function parseLevel(text: string | undefined): LogLevel | undefined {
  const upper = text?.trim().toUpperCase();
  return upper && upper in SEVERITY ? upper as LogLevel : undefined;
}

/** Sets the least severe level written. */
export function setLogLevel(level: LogLevel): void {
  threshold = SEVERITY[level];
}

/** Chooses how a line is written: JSON (the default) or text. */
export function setLogFormat(choice: LogFormat): void {
  format = choice === "json" ? (record) => JSON.stringify(record) : textLine;
}

/**
 * `ts LEVEL event key=value…`: values that are not a bare word are written as JSON strings, so
 * a line stays one line and splits unambiguously.
 */
function textLine({ ts, level, event, ...fields }: LogFields): string {
  const words = [String(ts), String(level).padEnd(5), String(event)];
  for (const [name, value] of Object.entries(fields)) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    words.push(`${name}=${/^[\w.:/@+-]+$/.test(text) ? text : JSON.stringify(text)}`);
  }
  return words.join(" ");
}

/** Redirects log lines (tests, or a client that keeps stdout for the user); returns the old sink. */
export function setLogSink(write: (line: string) => void): (line: string) => void {
  const previous = sink;
  sink = write;
  return previous;
}

/** Fields every later line ends with (a worker process: its `worker` index). */
export function setLogContext(fields: LogFields): void {
  context = { ...fields };
}

/** Writes one event at `level` when the level is enabled. */
export function log(level: LogLevel, event: string, fields: LogFields = {}): void {
  if (SEVERITY[level] < threshold) return;
  const record: LogFields = { ts: new Date().toISOString(), level, event };
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) record[name] = SECRET_FIELD.test(name) ? "[redacted]" : value;
  }
  Object.assign(record, context);
  sink(format(record));
}

/** Shorthands by level. */
export const audit = {
  debug: (event: string, fields?: LogFields) => log("DEBUG", event, fields),
  info: (event: string, fields?: LogFields) => log("INFO", event, fields),
  warn: (event: string, fields?: LogFields) => log("WARN", event, fields),
  error: (event: string, fields?: LogFields) => log("ERROR", event, fields),
};
