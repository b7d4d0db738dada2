/**
 * qsign against OpenSSL 3.5, same load, same machine: starts `qsign serve` (echo mode) and a
 * Node 26 `tls.createServer` (peer/server.mjs: the same reply protocol) on loopback with the same
 * fresh `qsign pki init` PKI (ML-DSA-65 chains, mutual TLS) and the same group
 * (SecP384r1MLKEM1024), then runs each round against each server with two clients, `qsign bench`
 * and Node 26 (peer/load.mjs), and prints the figures and the ratios qsign/OpenSSL.
 *
 *   .tools/node_modules/.bin/deno run --allow-all tests/bench/compare.ts \
 *     [--handshakes 300] [--concurrency 4] [--transfers 8] [--transfer-bytes 4194304] \
 *     [--duration-limit 30] [--json FILE]
 *
 * Rounds: full handshakes; resumed handshakes (after each client's uncounted warm-up); data (each
 * connection sends --transfer-bytes and waits for the reply lines acknowledging them). Every run
 * is bounded by its count and by --duration-limit seconds. Before measuring, each server gets an
 * uncounted warm-up so JIT compilation stays out of the figures. Server CPU comes from
 * /proc/PID/stat around each run. qsign serve runs with --log-level WARN (the Node server logs
 * nothing either) and --max-handshakes-per-ip 0.
 */
import { parseArgs } from "node:util";
import type { BenchReport } from "../../src/bench/report.ts";
import { processSnapshot, type ResourceUsage, usageBetween } from "../../src/bench/resources.ts";
import { DENO, PEER_NODE, QSIGN_RUN_FLAGS, ROOT, runQsign, tempDir } from "../support/env.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    handshakes: { type: "string", default: "300" },
    concurrency: { type: "string", default: "4" },
    transfers: { type: "string", default: "8" },
    "transfer-bytes": { type: "string", default: String(4 * 2 ** 20) },
    "duration-limit": { type: "string", default: "30" },
    json: { type: "string" },
  },
});
const GROUP = "SecP384r1MLKEM1024";
const WARMUP_HANDSHAKES = 30;

/** The fields both clients report (peer/load.mjs prints a subset of BenchReport). */
type ClientReport = Pick<
  BenchReport,
  "durationMs" | "handshakes" | "latencyMs" | "throughput" | "errors" | "stoppedBy"
>;

interface Round {
  name: string;
  handshakes: number;
  concurrency: number;
  resume?: boolean;
  bytes?: number;
}

interface Run {
  round: string;
  server: "qsign" | "openssl";
  client: "qsign" | "node";
  report: ClientReport;
  serverUsage: ResourceUsage;
}

const rounds: Round[] = [
  { name: "full", handshakes: Number(values.handshakes), concurrency: Number(values.concurrency) },
  {
    name: "resumed",
    handshakes: Number(values.handshakes),
    concurrency: Number(values.concurrency),
    resume: true,
  },
  {
    name: "data",
    handshakes: Number(values.transfers),
    concurrency: 2,
    bytes: Number(values["transfer-bytes"]),
  },
];

await using dir = await tempDir("qsign-bench-");
const pkiDir = `${dir.path}/pki`;
const init = await runQsign(["pki", "init", "--dir", pkiDir]);
if (init.code !== 0) throw new Error(`qsign pki init failed:\n${init.stderr}`);
const pki = {
  root: `${pkiDir}/root-ca.crt`,
  serverCert: `${pkiDir}/server.crt`,
  serverKey: `${pkiDir}/server.key`,
  clientCert: `${pkiDir}/client.crt`,
  clientKey: `${pkiDir}/client.key`,
};

await using qsignServer = await startQsignServer();
await using opensslServer = await startNodeServer();
const servers = { qsign: qsignServer, openssl: opensslServer };

const runs: Run[] = [];
for (const server of Object.values(servers)) {
  await runQsignBench(server.port, {
    name: "warm-up",
    handshakes: WARMUP_HANDSHAKES,
    concurrency: 4,
  });
}
for (const round of rounds) {
  for (const [serverName, server] of Object.entries(servers)) {
    for (const client of ["qsign", "node"] as const) {
      const before = await processSnapshot(server.pid);
      const report = client === "qsign"
        ? await runQsignBench(server.port, round)
        : await runNodeLoad(server.port, round);
      const serverUsage = usageBetween(before, await processSnapshot(server.pid));
      runs.push({
        round: round.name,
        server: serverName as Run["server"],
        client,
        report,
        serverUsage,
      });
    }
  }
}

console.log(formatComparison(runs));
if (values.json) {
  await Deno.writeTextFile(
    values.json,
    JSON.stringify({ date: new Date(), rounds, runs }, null, 2),
  );
}

// ------------------------------------------------------------------ servers

interface Server extends AsyncDisposable {
  port: number;
  pid: number;
}

/** A child process as a Server that is killed on dispose. */
function serverProcess(child: Deno.ChildProcess, port: number): Server {
  return {
    port,
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
    },
  };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

async function startQsignServer(): Promise<Server> {
  const port = freePort();
  const child = new Deno.Command(DENO, {
    args: [
      ...QSIGN_RUN_FLAGS,
      "serve",
      ...["--listen", `127.0.0.1:${port}`, "--metrics-listen", "off"],
      ...["--cert", pki.serverCert, "--key", pki.serverKey, "--ca", pki.root],
      ...["--groups", GROUP, "--max-handshakes-per-ip", "0", "--log-level", "WARN"],
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const server = serverProcess(child, port);
  const deadline = Date.now() + 30_000;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return server;
    } catch (e) {
      if (Date.now() > deadline) {
        await server[Symbol.asyncDispose]();
        throw new Error(`qsign serve did not listen on ${port} within 30 s`, { cause: e });
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function startNodeServer(): Promise<Server> {
  const child = new Deno.Command(PEER_NODE, {
    args: [
      `${ROOT}/tests/bench/peer/server.mjs`,
      ...["--cert", pki.serverCert, "--key", pki.serverKey, "--ca", pki.root, "--group", GROUP],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timeout = setTimeout(() => child.kill("SIGKILL"), 30_000);
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error("the Node server exited before listening");
    text += value;
  }
  clearTimeout(timeout);
  // Keep draining stdout so the child never blocks on it.
  void (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return serverProcess(child, JSON.parse(text).port);
}

// ------------------------------------------------------------------ clients

function loadArgs(round: Round): string[] {
  return [
    ...["--handshakes", String(round.handshakes), "--concurrency", String(round.concurrency)],
    ...["--cert", pki.clientCert, "--key", pki.clientKey, "--ca", pki.root, "--group", GROUP],
    ...["--duration-limit", values["duration-limit"]!],
    ...(round.resume ? ["--resume"] : []),
    ...(round.bytes ? ["--bytes", String(round.bytes), "--bytes-mode", "reply"] : []),
  ];
}

async function runQsignBench(port: number, round: Round): Promise<ClientReport> {
  const out = await runQsign([
    "bench",
    "--connect",
    `127.0.0.1:${port}`,
    "--json",
    ...loadArgs(round),
  ]);
  if (out.code > 1) throw new Error(`qsign bench failed (${out.code}):\n${out.stderr}`);
  return JSON.parse(out.stdout);
}

async function runNodeLoad(port: number, round: Round): Promise<ClientReport> {
  const out = await new Deno.Command(PEER_NODE, {
    args: [`${ROOT}/tests/bench/peer/load.mjs`, "--port", String(port), ...loadArgs(round)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!out.success) throw new Error(`peer/load.mjs failed:\n${decoder.decode(out.stderr)}`);
  return JSON.parse(decoder.decode(out.stdout));
}

// ------------------------------------------------------------------ output

function formatComparison(runs: Run[]): string {
  const out: string[] = [];
  const num = (x: number | undefined, digits = 1) => x === undefined ? "-" : x.toFixed(digits);
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? "-" : (a / b).toFixed(2);
  for (const round of rounds) {
    const inRound = runs.filter((r) => r.round === round.name);
    out.push(
      `\n### ${round.name}: ${round.handshakes} connections, concurrency ${round.concurrency}` +
        `${round.resume ? ", resumed" : ""}${round.bytes ? `, ${round.bytes} bytes each` : ""}\n`,
      "| client | server | handshakes/s | p50 ms | p90 ms | p99 ms | MiB/s | resumed | errors | server CPU ms/handshake | server RSS peak MiB |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of inRound) {
      const h = r.report.handshakes;
      const l = r.report.latencyMs;
      const cpuPerHandshake = (r.serverUsage.cpuUserMs + r.serverUsage.cpuSystemMs) /
        Math.max(1, h.completed);
      out.push(
        `| ${r.client} | ${r.server} | ${num(h.perSecond)} | ${num(l?.p50)} | ${num(l?.p90)} | ` +
          `${num(l?.p99)} | ${
            num(r.report.throughput && r.report.throughput.bytesPerSecond / 2 ** 20)
          } | ` +
          `${h.resumed}/${h.completed} | ${h.failed} | ${num(cpuPerHandshake)} | ` +
          `${num(r.serverUsage.rssPeakBytes / 2 ** 20, 0)} |`,
      );
    }
    out.push(
      "",
      "| client | qsign/OpenSSL handshakes/s | p50 | p99 | MiB/s | server CPU/handshake |",
      "|---|---|---|---|---|---|",
    );
    for (const client of ["qsign", "node"] as const) {
      const q = inRound.find((r) => r.client === client && r.server === "qsign");
      const o = inRound.find((r) => r.client === client && r.server === "openssl");
      if (!q || !o) continue;
      const qResumed = q.report.handshakes.resumed, oResumed = o.report.handshakes.resumed;
      if (qResumed !== oResumed) {
        out.push(
          `| ${client} | not comparable: ${qResumed} resumed against qsign, ${oResumed} against OpenSSL | | | | |`,
        );
        continue;
      }
      const cpu = (r: Run) =>
        (r.serverUsage.cpuUserMs + r.serverUsage.cpuSystemMs) /
        Math.max(1, r.report.handshakes.completed);
      out.push(
        `| ${client} | ${ratio(q.report.handshakes.perSecond, o.report.handshakes.perSecond)} | ` +
          `${ratio(q.report.latencyMs?.p50, o.report.latencyMs?.p50)} | ` +
          `${ratio(q.report.latencyMs?.p99, o.report.latencyMs?.p99)} | ` +
          `${ratio(q.report.throughput?.bytesPerSecond, o.report.throughput?.bytesPerSecond)} | ` +
          `${ratio(cpu(q), cpu(o))} |`,
      );
    }
    for (const r of inRound.filter((r) => r.report.errors.length)) {
      out.push(`\nerrors, ${r.client} → ${r.server}: ${JSON.stringify(r.report.errors)}`);
    }
  }
  return out.join("\n");
}
