/**
 * `qsign bench`: a bounded load generator with qsign's own TLS client, against qsign or any TLS
 * 1.3 server. Parses the command line, loads the client's certificate and trust, runs
 * src/bench/load.ts and prints the report (text, or JSON with --json).
 */
import { type CommandSpec, parseCommand } from "./args.ts";
import { CLIENT_TLS_OPTIONS, clientSettingsFromArgs } from "./connect.ts";
import { parseAddress, parseDurationMs } from "../config/values.ts";
import { setLogSink } from "../observe/log.ts";
import { buildClientConfig } from "../daemon/client.ts";
import { BYTES_MODES } from "../bench/exchange.ts";
import { runLoad } from "../bench/load.ts";
import { formatReport } from "../bench/report.ts";

const SPEC: CommandSpec = {
  name: "bench",
  summary: "Measure handshakes per second, handshake latency (p50/p90/p99), throughput, CPU and " +
    "memory against a TLS 1.3 server (qsign or any other), with qsign's own client. Bounded: " +
    "stops after --handshakes connections or --duration-limit, whichever comes first. Each " +
    "connection: TCP connect, handshake, optional --bytes data phase, close_notify both ways. " +
    "Exit status 1 when any connection failed.",
  options: {
    connect: { type: "string", value: "HOST:PORT", help: "the server to load" },
    handshakes: {
      type: "string",
      value: "N",
      help: "connections to make, one handshake each",
      default: "100",
    },
    concurrency: {
      type: "string",
      value: "C",
      help: "connections in progress at once",
      default: "4",
    },
    resume: {
      type: "boolean",
      help: "resume sessions with tickets (after an uncounted warm-up of C full handshakes)",
    },
    bytes: {
      type: "string",
      value: "N",
      help: "after each handshake, send N bytes and wait until the server has them",
      default: "0",
    },
    "bytes-mode": {
      type: "string",
      value: "MODE",
      choices: BYTES_MODES,
      help: "reply: qsign echo mode acknowledges each chunk with a reply line (default); " +
        "echo: the server sends every byte back (checked); sink: send, close_notify, wait for " +
        "the server's close",
      default: "reply",
    },
    "duration-limit": {
      type: "string",
      value: "DURATION",
      help: "start no connection after this long (seconds, or 500ms/10s/5m)",
      default: "60s",
    },
    group: {
      type: "string",
      value: "GROUP",
      multiple: true,
      help: "key exchange groups to offer, most preferred first (the first gets a key share)",
    },
    ...CLIENT_TLS_OPTIONS,
    json: { type: "boolean", help: "print the report as one JSON document" },
  },
};

/** This command's options, for completion and the man page. */
export const COMMAND_SPECS: CommandSpec[] = [SPEC];

/** Runs `qsign bench`. */
export async function run(argv: string[]): Promise<number> {
  const args = parseCommand(SPEC, argv);
  if (!args) return 0;
  const origin = (name: string) => ({ field: `--${name}` });
  const server = parseAddress(args.requireString("connect"), "127.0.0.1", origin("connect"));
  const settings = clientSettingsFromArgs(args, server);
  const handshakes = args.integer("handshakes", { min: 1 })!;
  const concurrency = args.integer("concurrency", { min: 1, max: 10_000 })!;
  const bytes = args.integer("bytes", { min: 0 })!;
  const bytesMode = args.choice("bytes-mode", BYTES_MODES)!;
  const durationLimitMs = parseDurationMs(args.string("duration-limit"), origin("duration-limit"));
  const config = await buildClientConfig({
    ...settings,
    groups: args.has("group") ? args.list("group", { splitCommas: true }) : undefined,
  });

  // The report owns stdout; whatever the engine logs goes to stderr.
  setLogSink((line) => console.error(line));
  const report = await runLoad({
    server,
    config,
    handshakes,
    concurrency,
    resume: args.boolean("resume"),
    bytes,
    bytesMode,
    durationLimitMs,
  });
  console.log(args.boolean("json") ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.handshakes.failed > 0 ? 1 : 0;
}
