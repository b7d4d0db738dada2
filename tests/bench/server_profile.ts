/**
 * Where the time of qsign's server handshake goes. Runs the TLS engine's server (acceptTls with
 * a fresh `qsign pki init` PKI: ML-DSA-65 chains, mutual TLS, SecP384r1MLKEM1024) in this
 * process, drives it from Node 26 (peer/load.mjs, OpenSSL 3.5, another process, one connection
 * at a time), and counts every WebCrypto call the server makes, with its time from call to
 * settle. Prints, per operation, calls and milliseconds per handshake, next to the server's CPU
 * time per handshake. With --bytes N each connection also sends N bytes, which the server answers
 * as `qsign serve` does (one reply line per chunk read, src/daemon/handlers.ts), and the CPU per
 * MiB is printed too. Deno's own profiler adds the JavaScript side: `deno run --cpu-prof
 * --cpu-prof-dir DIR …` (Deno 2.9 has the flag, not its --help).
 *
 *   .tools/node_modules/.bin/deno run --allow-all tests/bench/server_profile.ts \
 *     [--handshakes 100] [--resume] [--bytes 0]
 *
 * Bounded by --handshakes and the load's 60 s limit.
 */
import "reflect-metadata";
import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { loadCertifiedKeys, loadTrust } from "../../src/daemon/materials.ts";
import { initPki, PKI_FILES } from "../../src/pki/ca.ts";
import type { TlsServerConfig } from "../../src/tls/config.ts";
import { acceptTls } from "../../src/tls/conn.ts";
import { echoReply } from "../../src/daemon/handlers.ts";
import { TicketKeys } from "../../src/tls/tickets.ts";
import { PEER_NODE, ROOT, tempDir } from "../support/env.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    handshakes: { type: "string", default: "100" },
    resume: { type: "boolean", default: false },
    bytes: { type: "string", default: "0" },
  },
});
const BYTES = Number(values.bytes);
const GROUP = "SecP384r1MLKEM1024";

// ------------------------------------------------------------------ WebCrypto accounting

interface OpStats {
  calls: number;
  ms: number;
}
const ops = new Map<string, OpStats>();
let counting = false;

function algorithmName(algorithm: unknown): string {
  if (typeof algorithm === "string") return algorithm;
  const a = algorithm as { name?: string; hash?: string | { name: string }; namedCurve?: string };
  const hash = typeof a.hash === "string" ? a.hash : a.hash?.name;
  return [a.name, a.namedCurve, hash].filter(Boolean).join("/");
}

/** Which argument names the algorithm, per SubtleCrypto method. */
const DESCRIBE: Record<string, (args: unknown[]) => string> = {
  digest: (a) => algorithmName(a[0]),
  sign: (a) => algorithmName(a[0]),
  verify: (a) => algorithmName(a[0]),
  encrypt: (a) => algorithmName(a[0]),
  decrypt: (a) => algorithmName(a[0]),
  generateKey: (a) => algorithmName(a[0]),
  deriveBits: (a) => algorithmName(a[0]),
  encapsulateBits: (a) => algorithmName(a[0]),
  decapsulateBits: (a) => algorithmName(a[0]),
  importKey: (a) => `${algorithmName(a[2])} (${a[0]})`,
  exportKey: (a) => `${(a[1] as CryptoKey).algorithm.name} (${a[0]})`,
  getPublicKey: (a) => (a[0] as CryptoKey).algorithm.name,
};

const proto = SubtleCrypto.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
for (const [method, describe] of Object.entries(DESCRIBE)) {
  const original = proto[method];
  if (typeof original !== "function") continue;
  proto[method] = function (this: SubtleCrypto, ...args: unknown[]) {
    const result = original.apply(this, args) as Promise<unknown>;
    if (!counting) return result;
    const label = `${method} ${describe(args)}`;
    const start = performance.now();
    const settle = () => {
      const stats = ops.get(label) ?? { calls: 0, ms: 0 };
      stats.calls++;
      stats.ms += performance.now() - start;
      ops.set(label, stats);
    };
    result.then(settle, settle);
    return result;
  };
}

// ------------------------------------------------------------------ server and load

await using dir = await tempDir("qsign-profile-");
await initPki({ dir: dir.path, force: true });
const file = (name: string) => `${dir.path}/${name}`;
const origins = { cert: { field: "cert" }, key: { field: "key" }, ca: { field: "ca" } };
const { certificates } = await loadCertifiedKeys({
  cert: [file(PKI_FILES.serverCert)],
  key: [file(PKI_FILES.serverKey)],
  origins,
});
const trust = await loadTrust({ ca: [file(PKI_FILES.rootCert)], crl: [], origins });
const config: TlsServerConfig = {
  certificates,
  clientAuth: "require",
  ...trust,
  groups: [GROUP],
  tickets: TicketKeys.random(),
};

const encoder = new TextEncoder();
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
let handshakes = 0;
let sessions = 0;
let handshakeMs = 0;
let measuring = false;
const serving = (async () => {
  for await (const tcp of listener) {
    try {
      const tls = await acceptTls(tcp, config);
      if (measuring) {
        handshakes++;
        handshakeMs += tls.info.timings.handshakeMs;
      }
      // The echo service: a reply line per chunk, until the client's close_notify.
      const session = ++sessions;
      const writer = tls.writable.getWriter();
      for await (const chunk of tls.readable) {
        await writer.write(encoder.encode(echoReply("ko", session, chunk.length)));
      }
      await tls.close();
    } catch (e) {
      console.error(`server: ${(e as Error).message}`);
    }
  }
})();

async function load(count: number): Promise<void> {
  const out = await new Deno.Command(PEER_NODE, {
    args: [
      `${ROOT}/tests/bench/peer/load.mjs`,
      ...["--port", String(listener.addr.port), "--handshakes", String(count)],
      ...["--concurrency", "1", "--group", GROUP, "--duration-limit", "60"],
      ...["--cert", file(PKI_FILES.clientCert), "--key", file(PKI_FILES.clientKey)],
      ...["--ca", file(PKI_FILES.rootCert)],
      ...(values.resume ? ["--resume"] : []),
      ...(BYTES ? ["--bytes", String(BYTES), "--bytes-mode", "reply"] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const report = JSON.parse(new TextDecoder().decode(out.stdout));
  if (report.handshakes.failed) throw new Error(`load failed: ${JSON.stringify(report.errors)}`);
}

await load(20); // warm-up: JIT, module loading, first-use costs
counting = true;
measuring = true;
const cpuBefore = cpuUsage();
await load(Number(values.handshakes));
const cpu = cpuUsage(cpuBefore);
counting = false;
listener.close();
await serving;

// ------------------------------------------------------------------ report

const perHandshake = (x: number) => (x / handshakes).toFixed(2);
const rows = [...ops].sort((a, b) => b[1].ms - a[1].ms);
const total = rows.reduce((sum, [, s]) => sum + s.ms, 0);
const cpuMs = (cpu.user + cpu.system) / 1000;
console.log(
  `${handshakes} server handshakes${values.resume ? " (resumed)" : ""}, one at a time: ` +
    `${perHandshake(cpuMs)} ms process CPU and ` +
    `${perHandshake(handshakeMs)} ms handshake time (first message to Finished) per handshake` +
    (BYTES
      ? `; with ${BYTES} bytes each, ${(cpuMs / (handshakes * BYTES / 2 ** 20)).toFixed(2)} ` +
        "ms CPU per MiB received (handshake included)"
      : "") +
    "\n",
);
console.log("| WebCrypto call | calls/handshake | µs/call | ms/handshake |");
console.log("|---|---|---|---|");
for (const [label, s] of rows) {
  console.log(
    `| ${label} | ${perHandshake(s.calls)} | ${(1000 * s.ms / s.calls).toFixed(0)} | ` +
      `${perHandshake(s.ms)} |`,
  );
}
console.log(
  `| all | ${perHandshake(rows.reduce((n, [, s]) => n + s.calls, 0))} | | ${perHandshake(total)} |`,
);
