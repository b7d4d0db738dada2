/**
 * `qsign bench`: a bounded load generator with qsign's own TLS client, against qsign or any TLS
 * 1.3 server. Parses the command line, loads the client's certificate and trust, runs
 * src/bench/load.ts (here, or with --workers in client processes that each run it on their
 * share, src/bench/processes.ts) and prints the report (text, or JSON with --json).
 */
import { type CommandSpec, parseCommand } from "./args.ts";
import { CLIENT_TLS_OPTIONS, clientSettingsFromArgs } from "./connect.ts";
import { formatAddress, parseAddress, parseDurationMs } from "../config/values.ts";
import { setLogSink } from "../observe/log.ts";
import { buildClientConfig } from "../daemon/client.ts";
import { BYTES_MODES } from "../bench/exchange.ts";
import { type LoadOptions, runLoad } from "../bench/load.ts";
import {
  awaitStart,
  PROCESS_MARKER,
  runClientProcesses,
  sendMeasurement,
  splitEvenly,
} from "../bench/processes.ts";
import {
  type BenchReport,
  formatReport,
  type LoadMeasurement,
  mergeMeasurements,
} from "../bench/report.ts";
import { UsageError } from "../errors.ts";

const SPEC: CommandSpec = {
  name: "bench",
  summary: "Measure handshakes per second, handshake latency (p50/p90/p99), throughput, CPU and " +
    "memory against a TLS 1.3 server (qsign or any other), with qsign's own client. Bounded: " +
    "stops after --handshakes connections or --duration-limit, whichever comes first. Each " +
    "connection: TCP connect, handshake, optional --bytes data phase, close_notify both ways. " +
    "With --workers N the load is split between N client processes started together, and " +
    "reported as one run and per process. Exit status 1 when any connection (or client " +
    "process) failed.",
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
    workers: {
      type: "string",
      value: "N",
      help: "client processes to split --handshakes and --concurrency between, for a server " +
        "that one client process cannot keep busy (1: this process)",
      default: "1",
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

/** Most client processes of one run. */
const MAX_WORKERS = 256;

/**
 * Runs `qsign bench`, or (PROCESS_MARKER first) one client process of `--workers N`, which runs
 * the same load on its share and hands its measurement to the parent instead of a report.
 */
export async function run(argv: string[]): Promise<number> {
  const asProcess = argv[0] === PROCESS_MARKER;
  const args = parseCommand(SPEC, asProcess ? argv.slice(1) : argv);
  if (!args) return 0;
  const origin = (name: string) => ({ field: `--${name}` });
  const server = parseAddress(args.requireString("connect"), "127.0.0.1", origin("connect"));
  const settings = clientSettingsFromArgs(args, server);
  const handshakes = args.integer("handshakes", { min: 1 })!;
  const concurrency = args.integer("concurrency", { min: 1, max: 10_000 })!;
  const workers = args.integer("workers", { min: 1, max: MAX_WORKERS })!;
  for (const [name, value] of [["concurrency", concurrency], ["handshakes", handshakes]] as const) {
    if (workers > value) {
      throw new UsageError(
        `bench: --workers ${workers} is more than --${name} ${value}: each client process ` +
          `needs at least one connection (lower --workers or raise --${name})`,
      );
    }
  }
  const bytes = args.integer("bytes", { min: 0 })!;
  const bytesMode = args.choice("bytes-mode", BYTES_MODES)!;
  const durationLimitMs = parseDurationMs(args.string("duration-limit"), origin("duration-limit"));
  // Loaded here even when client processes do the load: a wrong file is told once, up front.
  const config = await buildClientConfig({
    ...settings,
    groups: args.has("group") ? args.list("group", { splitCommas: true }) : undefined,
  });
  const load: LoadOptions = {
    server,
    config,
    handshakes,
    concurrency,
    resume: args.boolean("resume"),
    bytes,
    bytesMode,
    durationLimitMs,
  };

  // The report (or the measurement) owns stdout; whatever the engine logs goes to stderr.
  setLogSink((line) => console.error(line));
  if (asProcess) {
    sendMeasurement(await runLoad(load, awaitStart));
    return 0;
  }
  let measurements: LoadMeasurement[];
  let processes: BenchReport["processes"];
  if (workers === 1) measurements = [await runLoad(load)];
  else {
    const handshakeShares = splitEvenly(handshakes, workers);
    const concurrencyShares = splitEvenly(concurrency, workers);
    const outcomes = await runClientProcesses(
      argv,
      handshakeShares.map((h, i) => ({ handshakes: h, concurrency: concurrencyShares[i] })),
    );
    measurements = outcomes.flatMap((o) => (o.measurement ? [o.measurement] : []));
    processes = outcomes.map(({ measurement, ...outcome }) => ({
      ...outcome,
      ...(measurement && mergeMeasurements([measurement])),
    }));
  }
  const report: BenchReport = {
    target: formatAddress(server),
    serverName: config.serverName,
    settings: {
      handshakes,
      concurrency,
      workers,
      resume: load.resume,
      bytes,
      bytesMode: bytes > 0 ? bytesMode : undefined,
      durationLimitMs,
      groups: config.groups,
      signatureSchemes: config.signatureSchemes,
    },
    ...mergeMeasurements(measurements),
    processes,
  };
  console.log(args.boolean("json") ? JSON.stringify(report, null, 2) : formatReport(report));
  const processFailed = processes?.some((p) => p.stderrTail !== undefined) ?? false;
  return report.handshakes.failed > 0 || processFailed ? 1 : 0;
}
