/**
 * Command-line parsing for every qsign command, on Node's `util.parseArgs` (shipped with Deno's
 * Node compatibility layer, so no extra dependency): one spec per command gives both the parser
 * and the `--help` text, and every mistake becomes a one-line `UsageError` (exit status 2).
 */
import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";
import { closest } from "../suggest.ts";

/** One option of a command. */
export interface OptionSpec {
  type: "string" | "boolean";
  /** One line for `--help`. */
  help: string;
  short?: string;
  /** Repeatable: every occurrence is kept, in order. */
  multiple?: boolean;
  /** Placeholder shown in `--help` for the value, e.g. `FILE`. */
  value?: string;
  default?: string | boolean;
  /** The values an enum option takes: listed in `--help`, man page and completion. */
  choices?: readonly string[];
  /** Older spellings still accepted (without dashes), e.g. `label` for `key-label`. */
  aliases?: string[];
}

/** A command's options, positional arguments and help text. */
export interface CommandSpec {
  /** As typed, e.g. `pki init`. */
  name: string;
  summary: string;
  /** Positional arguments, shown in the usage line, e.g. `HOST:PORT`. */
  positionals?: { name: string; help: string; optional?: boolean; variadic?: boolean }[];
  options: Record<string, OptionSpec>;
}

/** Parsed arguments with typed accessors that raise `UsageError` on bad values. */
export class Args {
  constructor(
    readonly spec: CommandSpec,
    private readonly values: Record<string, string | boolean | (string | boolean)[] | undefined>,
    readonly positionals: string[],
  ) {}

  /** True when the option was given on the command line (defaults do not count). */
  has(name: string): boolean {
    return this.values[name] !== undefined;
  }

  string(name: string): string | undefined {
    const v = this.values[name] ?? this.spec.options[name]?.default;
    return typeof v === "string" ? v : undefined;
  }

  requireString(name: string): string {
    const v = this.string(name);
    if (v === undefined || v === "") {
      throw new UsageError(`${this.spec.name}: --${name} is required`);
    }
    return v;
  }

  boolean(name: string): boolean {
    const v = this.values[name] ?? this.spec.options[name]?.default;
    return v === true;
  }

  /** A repeatable option; comma-separated values are split too (`--san a,b --san c`). */
  list(name: string, { splitCommas = false } = {}): string[] {
    const v = this.values[name];
    const items = (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter(
      (x): x is string => typeof x === "string",
    );
    return splitCommas
      ? items.flatMap((x) => x.split(",")).map((x) => x.trim()).filter(Boolean)
      : items;
  }

  integer(name: string, { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = {}):
    | number
    | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!/^-?\d+$/.test(v)) {
      throw new UsageError(`${this.spec.name}: --${name} must be a whole number, got "${v}"`);
    }
    const n = Number(v);
    if (n < min || n > max) {
      throw new UsageError(
        `${this.spec.name}: --${name} must be between ${min} and ${max}, got ${n}`,
      );
    }
    return n;
  }

  /** One of a fixed set of words. */
  choice<T extends string>(name: string, choices: readonly T[]): T | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!(choices as readonly string[]).includes(v)) {
      throw new UsageError(
        `${this.spec.name}: --${name} must be one of ${choices.join("|")}, got "${v}"`,
      );
    }
    return v as T;
  }

  positional(index: number, label: string): string {
    const v = this.positionals[index];
    if (v === undefined) throw new UsageError(`${this.spec.name}: missing ${label}`);
    return v;
  }
}

/**
 * Parses `argv` against `spec`. Returns `null` when `--help`/`-h` was asked for, after printing
 * the help text. Throws `UsageError` for unknown options, missing values and stray arguments.
 */
export function parseCommand(spec: CommandSpec, argv: string[]): Args | null {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(helpText(spec));
    return null;
  }
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {};
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = {
      type: o.type,
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
    for (const alias of o.aliases ?? []) {
      options[alias] = { type: o.type, ...(o.multiple ? { multiple: true } : {}) };
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(
      `${spec.name}: ${describeParseError(e, spec)} (see qsign ${spec.name} --help)`,
    );
  }
  const values: Record<string, string | boolean | (string | boolean)[] | undefined> = {
    ...parsed.values,
  };
  for (const [name, o] of Object.entries(spec.options)) {
    for (const alias of o.aliases ?? []) {
      if (values[alias] === undefined) continue;
      if (values[name] !== undefined) {
        throw new UsageError(`${spec.name}: --${alias} is another spelling of --${name}: give one`);
      }
      values[name] = values[alias];
      delete values[alias];
    }
  }
  const declared = spec.positionals ?? [];
  const variadic = declared.some((p) => p.variadic);
  if (!variadic && parsed.positionals.length > declared.length) {
    throw new UsageError(
      `${spec.name}: unexpected argument "${
        parsed.positionals[declared.length]
      }" (see qsign ${spec.name} --help)`,
    );
  }
  return new Args(spec, values, parsed.positionals);
}

function describeParseError(e: unknown, spec: CommandSpec): string {
  const message = e instanceof Error ? e.message : String(e);
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) {
    const names = Object.entries(spec.options).flatMap(([n, o]) => [n, ...(o.aliases ?? [])]);
    const guess = closest(unknown[1].replace(/^-+/, "").split("=")[0], [...names, "help"]);
    return `unknown option ${unknown[1]}${guess ? ` (did you mean --${guess}?)` : ""}`;
  }
  const missing = /Option '([^']+)' argument missing/.exec(message);
  if (missing) return `option ${missing[1].split(",").pop()!.trim()} needs a value`;
  return message.split("\n")[0].replace(/\.$/, "");
}

/** Where `--help` wraps its lines. */
const HELP_WIDTH = 100;
/** The widest flag column; longer flags put their help on the next line, keeping the column. */
const MAX_FLAG_COLUMN = 34;

/** One option as `--help`, the man page and completion show it. */
export interface OptionView {
  name: string;
  spec: OptionSpec;
  /** `-s, --name VALUE`. */
  flag: string;
  /** The help line with its values, default, aliases and repeatability. */
  text: string;
}

/** The options of `spec` in `--help` order (alphabetical, `--help` last), described. */
export function optionViews(spec: CommandSpec): OptionView[] {
  const entries = Object.entries(spec.options).sort(([a], [b]) => a.localeCompare(b));
  const all: [string, OptionSpec][] = [
    ...entries,
    ["help", { type: "boolean", help: "show this help" }],
  ];
  return all.map(([name, o]) => {
    const value = o.value ?? (o.choices ? o.choices.join("|") : "VALUE");
    const flag = `${o.short ? `-${o.short}, ` : ""}--${name}${
      o.type === "string" ? ` ${value}` : ""
    }`;
    const listsChoices = o.choices &&
      (value === o.choices.join("|") || o.help.includes(o.choices.join("|")));
    const extra = [
      o.choices && !listsChoices ? `one of ${o.choices.join("|")}` : "",
      o.multiple ? "repeatable" : "",
      o.default !== undefined ? `default: ${o.default}` : "",
      o.aliases?.length ? `also ${o.aliases.map((a) => `--${a}`).join(", ")}` : "",
    ].filter(Boolean).join("; ");
    return { name, spec: o, flag, text: `${o.help}${extra ? ` (${extra})` : ""}` };
  });
}

/** `text` in lines of at most `width` characters, broken at spaces (and in a long a|b|c list). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    // A list of values longer than a line breaks after a "|".
    const pieces = word.length > width ? word.split(/(?<=\|)/) : [word];
    pieces.forEach((piece, i) => {
      const glue = i > 0 ? "" : " ";
      if (line && line.length + glue.length + piece.length > width) {
        lines.push(line);
        line = piece;
      } else line = line ? `${line}${glue}${piece}` : piece;
    });
  }
  if (line) lines.push(line);
  return lines;
}

/** Two columns: `left` padded to the column, `text` wrapped beside it. */
function columns(rows: [string, string][]): string[] {
  const column = Math.min(MAX_FLAG_COLUMN, Math.max(...rows.map(([left]) => left.length)));
  const indent = " ".repeat(2 + column + 2);
  const out: string[] = [];
  for (const [left, text] of rows) {
    const body = wrap(text, Math.max(30, HELP_WIDTH - indent.length));
    if (left.length > column) {
      out.push(`  ${left}`);
      out.push(...body.map((l) => indent + l));
    } else {
      out.push(
        `  ${left.padEnd(column)}  ${body[0] ?? ""}`,
        ...body.slice(1).map((l) => indent + l),
      );
    }
  }
  return out;
}

/** The `--help` text: usage line, summary, one line per option. */
export function helpText(spec: CommandSpec): string {
  const pos = (spec.positionals ?? []).map((p) => {
    const n = p.variadic ? `${p.name}...` : p.name;
    return p.optional ? `[${n}]` : n;
  });
  const lines = [
    `usage: qsign ${spec.name} [options]${pos.length ? " " + pos.join(" ") : ""}`,
    "",
    ...wrap(spec.summary, HELP_WIDTH),
  ];
  if (spec.positionals?.length) {
    lines.push("", "arguments:", ...columns(spec.positionals.map((p) => [p.name, p.help])));
  }
  lines.push("", "options:", ...columns(optionViews(spec).map((v) => [v.flag, v.text])));
  return lines.join("\n");
}
