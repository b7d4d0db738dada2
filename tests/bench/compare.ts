/**
 * qsign against OpenSSL 3.5 on the same machine, in one run: every row of the comparison table
 * (server CPU per full, distinct-certificate and resumed handshake, per browser-like handshake,
 * full and resumed, server CPU per MiB of AES-256-GCM and ChaCha20-Poly1305 data, RSS per idle
 * mutual-TLS connection, handshake p99 at 64 concurrent clients).
 *
 *   .tools/node_modules/.bin/deno run --allow-all tests/bench/compare.ts \
 *     [--cases full,distinct,resumed,browser,resumed-browser,aes,chacha,idle,p99] [--repeat 3] \
 *     [--handshakes 300] [--warmup 1000] [--distinct-certs 1100] [--transfer-bytes 4194304] \
 *     [--transfers 8] [--idle-connections 10000] [--duration-limit 60] [--qsign-arg ARG]… \
 *     [--instructions] [--json FILE]
 *
 * The servers are `qsign serve` (echo mode) and Node 26's `tls.createServer` (peer/server.mjs,
 * the same reply protocol), with the same fresh PKI and group. The client is the same for both:
 * Node 26 (peer/load.mjs), so that only the server differs. Each server first makes --warmup
 * full and as many resumed handshakes, uncounted: the figures are those of a running daemon,
 * after V8 has optimised what runs often. Each case runs `--repeat` times per
 * server, alternating the servers and switching which goes first on each repeat; the table gives
 * min / median / max per server, the ratio of the medians, and the 1-minute load average seen
 * before each run. Server CPU and RSS come from /proc around each run, summed over the server's
 * process tree (a qsign supervisor and its workers). Every run is bounded by
 * its count and by --duration-limit seconds. Speed is reported here, never asserted in a test.
 *
 * With --instructions, the servers run under valgrind's callgrind and the handshake and bulk
 * rows count the instructions each server executes in the measured run (every thread and
 * process of it, from the same instant the CPU figure would start) instead of its CPU time:
 * a figure that moves by a few percent from run to run however busy the machine is, where CPU
 * time moves by a fifth here. It counts work in user space only, not the kernel's nor time spent
 * waiting, so it complements the CPU rows rather than replacing them. Under callgrind everything
 * runs some fifty times slower: take fewer handshakes, a shorter warm-up and a longer limit
 * (`--instructions --cases browser,full --repeat 1 --handshakes 100 --warmup 300
 * --duration-limit 900` takes three minutes here). Needs valgrind (Debian's package).
 *
 * The idle case spreads its connections over as many holding clients as the descriptor limit
 * and one source address's ephemeral ports need, each bound to its own 127.0.0.0/8 address. A
 * server process holds at most RLIMIT_NOFILE connections too: past that the OpenSSL server (one
 * process) has no figure, and qsign needs enough workers (`--qsign-arg=--workers
 * --qsign-arg=4` for 50,000 under a limit of 20,000).
 */
import { parseArgs } from "node:util";
import { issueLeaf } from "../../src/pki/ca.ts";
import { processSnapshot } from "../../src/bench/resources.ts";
import { DENO, PEER_NODE, QSIGN_RUN_FLAGS, ROOT, runQsign, tempDir } from "../support/env.ts";
import { freePort, waitForPort } from "../support/services.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    cases: {
      type: "string",
      default: "full,distinct,resumed,browser,resumed-browser,aes,chacha,idle,p99",
    },
    repeat: { type: "string", default: "3" },
    handshakes: { type: "string", default: "300" },
    warmup: { type: "string", default: "1000" },
    "distinct-certs": { type: "string", default: "1100" },
    transfers: { type: "string", default: "8" },
    "transfer-bytes": { type: "string", default: String(4 * 2 ** 20) },
    "idle-connections": { type: "string", default: "10000" },
    "duration-limit": { type: "string", default: "60" },
    "qsign-arg": { type: "string", multiple: true, default: [] },
    instructions: { type: "boolean", default: false },
    json: { type: "string" },
  },
});

const count = (name: keyof typeof values) => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
};
const REPEAT = count("repeat");
const HANDSHAKES = count("handshakes");
const MIB = 2 ** 20;
const WARMUP_HANDSHAKES = count("warmup");
const INSTRUCTIONS = values.instructions;
const WORK_UNIT = INSTRUCTIONS ? "M instructions" : "ms CPU";
/** How long a server may take to start listening (callgrind makes it much slower). */
const START_TIMEOUT_MS = INSTRUCTIONS ? 300_000 : 30_000;

type ServerKind = "qsign" | "openssl";
/** Which server configuration a case needs: ML-DSA-65 mutual TLS, or a browser-like one. */
type Setup = "mtls" | "browser";
const GROUPS: Record<Setup, string> = { mtls: "SecP384r1MLKEM1024", browser: "X25519MLKEM768" };

interface Case {
  id: string;
  title: string;
  setup: Setup;
  unit: string;
  /** The issue's goal for the ratio qsign/OpenSSL (lower is better for every row). */
  goal: number;
  /** Runs the case once against a running server and returns the figure. */
  measure(server: Server): Promise<number>;
  /** Cases that need a server of their own for every run (RSS baselines). */
  freshServer?: boolean;
}

// ------------------------------------------------------------------ PKI

await using dir = await tempDir("qsign-compare-");
const mtlsDir = `${dir.path}/mtls`;
const browserDir = `${dir.path}/browser`;
for (const [pkiDir, alg] of [[mtlsDir, "mldsa65"], [browserDir, "ecdsa-p256"]]) {
  const init = await runQsign(["pki", "init", "--dir", pkiDir, "--alg", alg]);
  if (init.code !== 0) throw new Error(`qsign pki init --alg ${alg} failed:\n${init.stderr}`);
}
const files = (pkiDir: string) => ({
  root: `${pkiDir}/root-ca.crt`,
  serverCert: `${pkiDir}/server.crt`,
  serverKey: `${pkiDir}/server.key`,
  clientCert: `${pkiDir}/client.crt`,
  clientKey: `${pkiDir}/client.key`,
});
const mtls = files(mtlsDir);
const browser = files(browserDir);

/** A JSON list of distinct client certificates for peer/load.mjs --cert-list, made once. */
let certList: Promise<string> | undefined;
function distinctClientCertificates(): Promise<string> {
  certList ??= (async () => {
    const n = count("distinct-certs");
    const list: { cert: string; key: string }[] = [];
    await Deno.mkdir(`${dir.path}/clients`);
    for (let i = 0; i < n; i++) {
      const leaf = await issueLeaf({ dir: mtlsDir, profile: "client", cn: `client-${i}` });
      const cert = `${dir.path}/clients/${i}.crt`, key = `${dir.path}/clients/${i}.key`;
      await Deno.writeTextFile(cert, leaf.certPem);
      await Deno.writeTextFile(key, leaf.keyPem!);
      list.push({ cert, key });
    }
    const path = `${dir.path}/clients.json`;
    await Deno.writeTextFile(path, JSON.stringify(list));
    return path;
  })();
  return certList;
}

// ------------------------------------------------------------------ cases

const cpuMs = (before: Snapshot, after: Snapshot) =>
  after.cpuUserMs + after.cpuSystemMs - before.cpuUserMs - before.cpuSystemMs;
type Snapshot = Awaited<ReturnType<typeof processSnapshot>>;

/** The pids of `pid`'s live descendants, from /proc/PID/task/TID/children. */
async function descendants(pid: number): Promise<number[]> {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const next = queue.shift()!;
    try {
      for await (const task of Deno.readDir(`/proc/${next}/task`)) {
        const text = await Deno.readTextFile(`/proc/${next}/task/${task.name}/children`);
        for (const child of text.split(" ").filter(Boolean).map(Number)) {
          found.push(child);
          queue.push(child);
        }
      }
    } catch {
      // The process ended while being read.
    }
  }
  return found;
}

/**
 * CPU and RSS of a server and every worker process it runs, summed: `qsign serve --workers N`
 * is a supervisor and N workers, and all of them are the server.
 */
async function serverSnapshot(server: Server): Promise<Snapshot> {
  const pids = [server.pid, ...await descendants(server.pid)];
  const snapshots = await Promise.all(
    pids.map((pid) => processSnapshot(pid).catch(() => undefined)),
  );
  const total = { ...snapshots[0]! };
  for (const s of snapshots.slice(1)) {
    if (!s) continue;
    total.cpuUserMs += s.cpuUserMs;
    total.cpuSystemMs += s.cpuSystemMs;
    total.rssBytes += s.rssBytes;
    total.rssPeakBytes += s.rssPeakBytes;
  }
  return total;
}

/**
 * What the server did during `run`: CPU ms from /proc, or with --instructions millions of
 * instructions from callgrind (counted only while `run` goes on, in every process of the
 * server).
 */
async function serverWork<T>(server: Server, run: () => Promise<T>): Promise<[T, number]> {
  if (INSTRUCTIONS) {
    const pids = [server.pid, ...await descendants(server.pid)];
    const dumped = new Set(await callgrindDumps());
    await callgrindControl("--instr=on", pids);
    let result: T;
    try {
      result = await run();
    } finally {
      // A dump holds what was counted since the last one; nothing is counted between runs.
      await callgrindControl("--dump", pids);
      await callgrindControl("--instr=off", pids);
    }
    let instructions = 0;
    for (const file of (await callgrindDumps()).filter((f) => !dumped.has(f))) {
      const totals = /^totals: (\d+)$/m.exec(await Deno.readTextFile(file))?.[1];
      if (!totals) throw new Error(`no totals line in ${file}`);
      instructions += Number(totals);
    }
    return [result, instructions / 1e6];
  }
  const before = await serverSnapshot(server);
  const result = await run();
  const after = await serverSnapshot(server);
  return [result, cpuMs(before, after)];
}

/** Server CPU ms (or M instructions) per completed handshake of one load run. */
async function workPerHandshake(server: Server, load: LoadOptions): Promise<number> {
  const [report, work] = await serverWork(server, () => runLoad(server, load));
  expectComplete(report, load);
  return work / report.handshakes.completed;
}

/** Server CPU ms (or M instructions) per MiB received, with one cipher suite. */
async function workPerMiB(server: Server, cipher: string): Promise<number> {
  const load: LoadOptions = {
    handshakes: count("transfers"),
    concurrency: 2,
    bytes: count("transfer-bytes"),
    cipher,
  };
  // Uncounted: the server's warm-up was handshakes only, so the data path's JIT compilation
  // would otherwise fall into the first bulk figure (the AES row, which runs first). Eight
  // transfers, so that every worker of a multi-worker server is all but sure to get some.
  const warmup = { ...load, handshakes: 8, bytes: Math.min(load.bytes!, MIB) };
  expectComplete(await runLoad(server, warmup), warmup);
  const [report, work] = await serverWork(server, () => runLoad(server, load));
  expectComplete(report, load);
  return work / (report.throughput!.bytesSent / MIB);
}

// ------------------------------------------------------------------ callgrind

const callgrindDir = `${dir.path}/callgrind`;
if (INSTRUCTIONS) {
  const probe = await new Deno.Command("valgrind", { args: ["--version"], stdout: "null" })
    .output().catch(() => undefined);
  if (!probe?.success) throw new Error("--instructions needs valgrind: apt-get install valgrind");
  await Deno.mkdir(callgrindDir);
}

/** The command line that starts a server: as it is, or under callgrind, counting nothing yet. */
function serverCommand(program: string, args: string[]): [string, string[]] {
  if (!INSTRUCTIONS) return [program, args];
  return ["valgrind", [
    "--tool=callgrind",
    "--quiet",
    "--instr-atstart=no",
    // A qsign supervisor's workers are the server too.
    "--trace-children=yes",
    `--callgrind-out-file=${callgrindDir}/callgrind.%p`,
    program,
    ...args,
  ]];
}

async function callgrindDumps(): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(callgrindDir)) {
    // callgrind.PID.N: the Nth dump asked for; callgrind.PID is the one written at exit.
    if (/^callgrind\.\d+\.\d+$/.test(entry.name)) files.push(`${callgrindDir}/${entry.name}`);
  }
  return files;
}

/** callgrind_control COMMAND for each pid; a process only answers when it next runs. */
async function callgrindControl(command: string, pids: number[]): Promise<void> {
  const out = await new Deno.Command("callgrind_control", {
    args: [command, ...pids.map(String)],
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  if (!out.success) {
    throw new Error(`callgrind_control ${command} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const cases: Case[] = [
  {
    id: "full",
    title: "full mTLS, SecP384r1MLKEM1024, ML-DSA-65, one client cert",
    setup: "mtls",
    unit: `${WORK_UNIT}/handshake`,
    goal: 0.85,
    measure: (server) => workPerHandshake(server, { handshakes: HANDSHAKES, concurrency: 4 }),
  },
  {
    id: "distinct",
    title: `same, ${values["distinct-certs"]} distinct client certificates`,
    setup: "mtls",
    unit: `${WORK_UNIT}/handshake`,
    goal: 1.0,
    measure: async (server) =>
      workPerHandshake(server, {
        handshakes: Math.max(HANDSHAKES, count("distinct-certs")),
        concurrency: 4,
        certList: await distinctClientCertificates(),
      }),
  },
  {
    id: "resumed",
    title: "resumed (psk_dhe_ke, still the hybrid exchange)",
    setup: "mtls",
    unit: `${WORK_UNIT}/handshake`,
    goal: 0.9,
    measure: (server) =>
      workPerHandshake(server, { handshakes: HANDSHAKES, concurrency: 4, resume: true }),
  },
  {
    id: "browser",
    title: "browser-like: X25519MLKEM768, ECDSA P-256, no client cert",
    setup: "browser",
    unit: `${WORK_UNIT}/handshake`,
    goal: 1.0,
    measure: (server) => workPerHandshake(server, { handshakes: HANDSHAKES, concurrency: 4 }),
  },
  {
    // The resumed row where OpenSSL has a figure: without a client certificate it issues tickets.
    id: "resumed-browser",
    title: "resumed, browser-like (X25519MLKEM768, no client cert)",
    setup: "browser",
    unit: `${WORK_UNIT}/handshake`,
    goal: 0.9,
    measure: (server) =>
      workPerHandshake(server, { handshakes: HANDSHAKES, concurrency: 4, resume: true }),
  },
  {
    id: "aes",
    title: "bulk TLS_AES_256_GCM_SHA384, CPU per MiB received",
    setup: "mtls",
    unit: `${WORK_UNIT}/MiB`,
    goal: 1.0,
    measure: (server) => workPerMiB(server, "TLS_AES_256_GCM_SHA384"),
  },
  {
    id: "chacha",
    title: "bulk TLS_CHACHA20_POLY1305_SHA256, CPU per MiB received",
    setup: "mtls",
    unit: `${WORK_UNIT}/MiB`,
    goal: 1.0,
    measure: (server) => workPerMiB(server, "TLS_CHACHA20_POLY1305_SHA256"),
  },
  {
    id: "idle",
    title: `RSS per idle mTLS connection, ${values["idle-connections"]} held`,
    setup: "mtls",
    unit: "KiB/connection",
    goal: 0.4,
    freshServer: true,
    measure: async (server) => {
      const n = count("idle-connections");
      const limit = await openFileLimit();
      if (server.kind === "openssl" && n > limit - DESCRIPTOR_MARGIN) {
        throw new NotMeasurable(`one process may open ${limit} descriptors here`);
      }
      const before = await serverSnapshot(server);
      await using hold = await holdConnections(server, n);
      const after = await serverSnapshot(server);
      return (after.rssBytes - before.rssBytes) / 1024 / hold.held;
    },
  },
  {
    id: "p99",
    title: "handshake p99 at 64 concurrent clients",
    setup: "mtls",
    unit: "ms p99",
    goal: 1.0,
    measure: async (server) => {
      const load = { handshakes: 10 * 64, concurrency: 64 };
      const report = await runLoad(server, load);
      expectComplete(report, load);
      return report.latencyMs!.p99;
    },
  },
];

const wanted = values.cases.split(",").map((c) => c.trim());
for (const id of wanted) {
  const c = cases.find((c) => c.id === id);
  if (!c) throw new Error(`unknown case ${id}: one of ${cases.map((c) => c.id).join(", ")}`);
  if (INSTRUCTIONS && !c.unit.startsWith(WORK_UNIT)) {
    throw new Error(
      `case ${id} has no instruction count (--instructions counts work, not ${c.unit})`,
    );
  }
}

// ------------------------------------------------------------------ run

interface Sample {
  /** NaN where the server could not do what the case measures (see NotMeasurable). */
  value: number;
  loadAverage: number;
  note?: string;
}
interface Result {
  id: string;
  title: string;
  unit: string;
  goal: number;
  samples: Record<ServerKind, Sample[]>;
}

const shared = new Map<string, Promise<Server>>();
async function serverFor(kind: ServerKind, setup: Setup, fresh: boolean): Promise<Server> {
  if (fresh) return await startServer(kind, setup);
  const key = `${kind}/${setup}`;
  if (!shared.has(key)) shared.set(key, startServer(kind, setup));
  return await shared.get(key)!;
}

// ------------------------------------------------------------------ servers

interface Server extends AsyncDisposable {
  kind: ServerKind;
  setup: Setup;
  port: number;
  pid: number;
}

function serverProcess(
  child: Deno.ChildProcess,
  kind: ServerKind,
  setup: Setup,
  port: number,
): Server {
  return {
    kind,
    setup,
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

async function startServer(kind: ServerKind, setup: Setup): Promise<Server> {
  const pki = setup === "mtls" ? mtls : browser;
  const server = kind === "qsign" ? await startQsign(setup, pki) : await startNode(setup, pki);
  // Uncounted full and resumed handshakes, so that the figures are a running daemon's: V8
  // optimises qsign's code (and Node's JavaScript TLS layer) only after it has run a while,
  // and each worker of a multi-worker server gets its share of the warm-up. A server that
  // issues no tickets just does full handshakes again.
  for (const resume of [false, true]) {
    const load = { handshakes: WARMUP_HANDSHAKES, concurrency: 4, resume };
    expectComplete(await runLoad(server, load), { ...load, resume: false });
  }
  return server;
}

async function startQsign(setup: Setup, pki: typeof mtls): Promise<Server> {
  const port = freePort();
  const [program, args] = serverCommand(DENO, [
    ...QSIGN_RUN_FLAGS,
    "serve",
    ...["--listen", `127.0.0.1:${port}`, "--metrics-listen", "off"],
    ...["--cert", pki.serverCert, "--key", pki.serverKey, "--ca", pki.root],
    ...["--groups", GROUPS[setup], "--max-handshakes-per-ip", "0", "--log-level", "WARN"],
    ...["--max-connections", String(count("idle-connections") + 1000)],
    // The idle case's first connections wait, idle, for as long as the rest take to connect.
    ...["--idle-timeout", "1h"],
    ...(setup === "browser" ? ["--client-auth", "none"] : []),
    ...values["qsign-arg"],
  ]);
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const server = serverProcess(child, "qsign", setup, port);
  await waitForPort(port, "qsign serve", START_TIMEOUT_MS).catch(async (e) => {
    await server[Symbol.asyncDispose]();
    throw e;
  });
  return server;
}

async function startNode(setup: Setup, pki: typeof mtls): Promise<Server> {
  const [program, args] = serverCommand(PEER_NODE, [
    `${ROOT}/tests/bench/peer/server.mjs`,
    ...["--cert", pki.serverCert, "--key", pki.serverKey, "--ca", pki.root],
    ...["--group", GROUPS[setup]],
    ...(setup === "browser" ? ["--no-client-auth"] : []),
  ]);
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timeout = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
  const text = await firstLine(reader, "the Node server exited before listening");
  clearTimeout(timeout);
  // Keep draining stdout so the child never blocks on it.
  void (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return serverProcess(child, "openssl", setup, JSON.parse(text).port);
}

// ------------------------------------------------------------------ the client

interface LoadOptions {
  handshakes: number;
  concurrency: number;
  resume?: boolean;
  bytes?: number;
  cipher?: string;
  certList?: string;
}

interface LoadReport {
  handshakes: { completed: number; failed: number; resumed: number };
  latencyMs?: { p50: number; p99: number };
  throughput?: { bytesSent: number };
  errors: unknown[];
}

function loadArgs(server: Server, load: LoadOptions): string[] {
  const pki = server.setup === "mtls" ? mtls : browser;
  const identity = server.setup === "browser"
    ? []
    : load.certList
    ? ["--cert-list", load.certList]
    : ["--cert", pki.clientCert, "--key", pki.clientKey];
  return [
    `${ROOT}/tests/bench/peer/load.mjs`,
    ...["--port", String(server.port), "--ca", pki.root],
    ...identity,
    ...["--group", GROUPS[server.setup]],
    ...["--handshakes", String(load.handshakes), "--concurrency", String(load.concurrency)],
    ...["--duration-limit", values["duration-limit"]!],
    ...(load.resume ? ["--resume"] : []),
    ...(load.bytes ? ["--bytes", String(load.bytes), "--bytes-mode", "reply"] : []),
    ...(load.cipher ? ["--cipher", load.cipher] : []),
  ];
}

async function runLoad(server: Server, load: LoadOptions): Promise<LoadReport> {
  const out = await new Deno.Command(PEER_NODE, {
    args: loadArgs(server, load),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!out.success) throw new Error(`peer/load.mjs failed:\n${decoder.decode(out.stderr)}`);
  return JSON.parse(decoder.decode(out.stdout));
}

/**
 * A case the server cannot do, so it has no figure: OpenSSL 3.5 issues no ticket to a client
 * that authenticated with an ML-DSA chain (the session would carry the chain), and one process
 * cannot hold more connections than it may open descriptors.
 */
class NotMeasurable extends Error {}

/** A figure from a run with failures or missing resumptions would compare unlike things. */
function expectComplete(report: LoadReport, load: LoadOptions): void {
  const { completed, failed, resumed } = report.handshakes;
  if (failed || completed < load.handshakes) {
    throw new Error(
      `load run incomplete: ${completed}/${load.handshakes} handshakes, ${shortBy(failed)}: ` +
        JSON.stringify(report.errors),
    );
  }
  if (load.resume && resumed < completed) {
    throw new NotMeasurable(`only ${resumed} of ${completed} handshakes resumed`);
  }
}

/** Why a load stopped short: its failures, or, with none, the clients ran out of time. */
function shortBy(failed: number): string {
  return failed
    ? `${failed} failed`
    : `none failed: the clients ran out of --duration-limit ${values["duration-limit"]} s ` +
      "(raise it on a slow machine)";
}

/** Descriptors a process keeps for other things than held connections. */
const DESCRIPTOR_MARGIN = 1_000;

/** RLIMIT_NOFILE (soft) of this process, which the servers and clients it starts inherit. */
async function openFileLimit(): Promise<number> {
  const limits = await Deno.readTextFile("/proc/self/limits");
  const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
  if (!soft) throw new Error("no 'Max open files' line in /proc/self/limits");
  return Number(soft);
}

/** How many ephemeral ports one source address has towards one server port. */
async function ephemeralPorts(): Promise<number> {
  const [low, high] = (await Deno.readTextFile("/proc/sys/net/ipv4/ip_local_port_range"))
    .trim().split(/\s+/).map(Number);
  return high - low + 1;
}

/**
 * N idle connections held open until disposed, by as many Node clients as the descriptor limit
 * and the ephemeral ports of one source address need: client i connects from 127.0.0.(10+i).
 */
async function holdConnections(
  server: Server,
  n: number,
): Promise<{ held: number } & AsyncDisposable> {
  const perClient = Math.min(await openFileLimit(), await ephemeralPorts()) - DESCRIPTOR_MARGIN;
  const clients = Math.ceil(n / perClient);
  const shares = Array.from(
    { length: clients },
    (_, i) => Math.floor(n / clients) + (i < n % clients ? 1 : 0),
  );
  await using holders = new AsyncDisposableStack();
  const started = shares.map((share, i) => {
    const child = new Deno.Command(PEER_NODE, {
      args: [
        ...loadArgs(server, { handshakes: share, concurrency: 16 }),
        ...["--hold", "--local-address", `127.0.0.${10 + i}`],
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    holders.defer(async () => {
      await child.stdin.close();
      await child.status;
    });
    return firstReport(child);
  });
  const reports = await Promise.all(started);
  const held = reports.reduce((sum, r) => sum + r.handshakes.completed, 0);
  const failed = reports.reduce((sum, r) => sum + r.handshakes.failed, 0);
  if (failed || held < n) {
    throw new Error(
      `held only ${held}/${n} connections, ${shortBy(failed)}: ` +
        JSON.stringify(reports.flatMap((r) => r.errors)),
    );
  }
  // Let the server settle (tickets sent, buffers released) before its RSS is read.
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const release = holders.move();
  return { held, [Symbol.asyncDispose]: () => release.disposeAsync() };
}

/** The report a `--hold` client prints once all its connections are up. */
async function firstReport(child: Deno.ChildProcess): Promise<LoadReport> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  return JSON.parse(await firstLine(reader, "peer/load.mjs --hold exited before reporting"));
}

/** What a child printed up to its first newline; `ended` is the error if it ends before one. */
async function firstLine(
  reader: ReadableStreamDefaultReader<string>,
  ended: string,
): Promise<string> {
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(ended);
    text += value;
  }
  return text;
}

// ------------------------------------------------------------------ output

async function oneMinuteLoad(): Promise<number> {
  return Number((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
}

async function machine(): Promise<Record<string, string | number>> {
  const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ?? "";
  return { cpu, cores: navigator.hardwareConcurrency, deno: Deno.version.deno };
}

function spread(samples: Sample[]): { min: number; median: number; max: number } {
  const sorted = samples.map((s) => s.value).sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { min: sorted[0], median, max: sorted[sorted.length - 1] };
}

function formatTable(results: Result[]): string {
  const f = (x: number) => x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  const cell = (samples: Sample[]) => {
    const note = samples.find((s) => s.note)?.note;
    if (note) return `n/a: ${note}`;
    const { min, median, max } = spread(samples);
    return `${f(median)} (${f(min)}–${f(max)})`;
  };
  const loads = (samples: Sample[]) => {
    const l = samples.map((s) => s.loadAverage);
    return `${Math.min(...l).toFixed(1)}–${Math.max(...l).toFixed(1)}`;
  };
  const lines = [
    `| case | unit | qsign median (min–max) | OpenSSL 3.5 median (min–max) | ratio | goal | load avg |`,
    `|---|---|---|---|---|---|---|`,
  ];
  for (const r of results) {
    const ratio = spread(r.samples.qsign).median / spread(r.samples.openssl).median;
    lines.push(
      `| ${r.title} | ${r.unit} | ${cell(r.samples.qsign)} | ${cell(r.samples.openssl)} | ` +
        `${Number.isNaN(ratio) ? "-" : ratio.toFixed(2)} | ≤ ${r.goal.toFixed(2)} | ` +
        `${loads([...r.samples.qsign, ...r.samples.openssl])} |`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const results: Result[] = [];
  try {
    for (const c of cases.filter((c) => wanted.includes(c.id))) {
      const result: Result = {
        id: c.id,
        title: c.title,
        unit: c.unit,
        goal: c.goal,
        samples: { qsign: [], openssl: [] },
      };
      for (let r = 0; r < REPEAT; r++) {
        const order: ServerKind[] = r % 2 === 0 ? ["qsign", "openssl"] : ["openssl", "qsign"];
        for (const kind of order) {
          const server = await serverFor(kind, c.setup, c.freshServer ?? false);
          const loadAverage = await oneMinuteLoad();
          try {
            result.samples[kind].push({ value: await c.measure(server), loadAverage });
          } catch (e) {
            if (e instanceof NotMeasurable) {
              result.samples[kind].push({ value: NaN, loadAverage, note: e.message });
              continue;
            }
            throw new Error(`case ${c.id} against ${kind}: ${(e as Error).message}`, { cause: e });
          } finally {
            if (c.freshServer) await server[Symbol.asyncDispose]();
          }
        }
      }
      results.push(result);
      console.error(`${c.id}: done`);
    }
  } finally {
    for (const server of shared.values()) await (await server)[Symbol.asyncDispose]();
  }

  console.log(formatTable(results));
  if (values.json) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify({ date: new Date(), machine: await machine(), results }, null, 2),
    );
  }
}

await main();
