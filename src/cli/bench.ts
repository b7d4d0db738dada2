/**
 * `qsign bench`: a bounded load generator with qsign's own TLS client, against qsign or any TLS
 * 1.3 server. Parses the command line, loads the client's certificate and trust, runs
 * src/bench/load.ts and prints the report (text, or JSON with --json).
 */
import { type CommandSpec, parseCommand } from "./args.ts";
import { parseAddress, parseDurationMs } from "../config/values.ts";
import { UsageError } from "../errors.ts";
import { setLogSink } from "../observe/log.ts";
import { buildClientConfig } from "../daemon/client.ts";
import { BYTES_MODES } from "../bench/exchange.ts";
import { runLoad } from "../bench/load.ts";
import { formatReport } from "../bench/report.ts";
import type { TlsClientConfig } from "../tls/config.ts";
import { resolveSchemes } from "../tls/sigschemes.ts";

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
    cert: { type: "string", value: "FILE", help: "client certificate chain PEM (leaf first)" },
    key: { type: "string", value: "FILE", help: "client private key PEM" },
    ca: {
      type: "string",
      value: "FILE",
      multiple: true,
      help: "trusted roots for the server's chain",
    },
    crl: {
      type: "string",
      value: "FILE",
      multiple: true,
      help: "CRLs checked for the server's chain",
    },
    servername: {
      type: "string",
      value: "NAME",
      help: "SNI and the name checked in the server certificate (default: the host)",
    },
    group: {
      type: "string",
      value: "GROUP",
      multiple: true,
      help: "key exchange groups to offer, most preferred first (the first gets a key share)",
    },
    sigalgs: {
      type: "string",
      value: "SCHEME",
      multiple: true,
      help: "signature schemes to accept for the server's CertificateVerify, most preferred " +
        "first (e.g. mldsa65, ecdsa_secp384r1_sha384): the server signs with the first it can",
    },
    "allow-classical": { type: "boolean", help: "also offer classical key exchange" },
    "require-pq-auth": {
      type: "boolean",
      help: "refuse a server whose chain or signature is not post-quantum",
    },
    alpn: { type: "string", value: "PROTO", multiple: true, help: "ALPN protocols to offer" },
    "handshake-timeout": {
      type: "string",
      value: "DURATION",
      help: "a handshake not finished in this time fails with timeout",
      default: "10s",
    },
    json: { type: "boolean", help: "print the report as one JSON document" },
  },
};

/** Runs `qsign bench`. */
export async function run(argv: string[]): Promise<number> {
  const args = parseCommand(SPEC, argv);
  if (!args) return 0;
  const origin = (name: string) => ({ field: `--${name}` });
  const server = parseAddress(args.requireString("connect"), "127.0.0.1", origin("connect"));
  const cert = args.string("cert");
  const key = args.string("key");
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("bench: --cert and --key go together");
  }
  const ca = args.list("ca", { splitCommas: true });
  if (ca.length === 0) {
    throw new UsageError("bench: --ca is required (the roots the server's chain must reach)");
  }
  const handshakes = args.integer("handshakes", { min: 1 })!;
  const concurrency = args.integer("concurrency", { min: 1, max: 10_000 })!;
  const bytes = args.integer("bytes", { min: 0 })!;
  const bytesMode = args.choice("bytes-mode", BYTES_MODES)!;
  const durationLimitMs = parseDurationMs(args.string("duration-limit"), origin("duration-limit"));
  const requirePqAuth = args.boolean("require-pq-auth");
  const signatureSchemes = args.has("sigalgs")
    ? args.list("sigalgs", { splitCommas: true })
    : undefined;
  try {
    resolveSchemes(signatureSchemes, requirePqAuth);
  } catch (e) {
    throw new UsageError(`bench: --sigalgs: ${(e as Error).message}`);
  }

  const origins = {
    cert: origin("cert"),
    key: origin("key"),
    ca: origin("ca"),
    crl: origin("crl"),
  };
  const config: TlsClientConfig = await buildClientConfig({
    server,
    serverName: args.string("servername"),
    credentials: { cert: cert ? [cert] : [], key: key ? [key] : [], origins },
    ca,
    crl: args.list("crl", { splitCommas: true }),
    groups: args.has("group") ? args.list("group", { splitCommas: true }) : undefined,
    allowClassical: args.boolean("allow-classical"),
    requirePqAuth,
    alpn: args.list("alpn", { splitCommas: true }),
    handshakeTimeoutMs: parseDurationMs(
      args.string("handshake-timeout"),
      origin("handshake-timeout"),
    ),
    origins,
  });
  config.signatureSchemes = signatureSchemes;

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
