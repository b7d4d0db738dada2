// The OpenSSL 3.5 client of the comparison (Node 26): the same bounded load as `qsign bench`
// (N connections, C at a time; each TCP connect + handshake, optional data phase, close_notify
// both ways), reported as the same JSON fields (handshakes, latencyMs, throughput, errors,
// client). Statistics come from qsign's own src/bench/stats.ts (Node strips its types).
//   node load.mjs --port P --ca F [--cert F --key F | --cert-list FILE] [--host 127.0.0.1]
//     [--local-address A] [--servername N] [--group G] [--cipher SUITE] [--handshakes 100] [--concurrency 4]
//     [--resume] [--bytes 0] [--bytes-mode reply|echo|sink] [--hold] [--duration-limit 60]
// --cert-list names a JSON file of [{"cert": PATH, "key": PATH}]: connections take them in turn,
// so a server sees that many distinct client chains. Without a certificate the client sends none.
// --hold keeps every connection open after its handshake: the report is printed once all are
// up, and the connections close when stdin ends. --local-address binds the client's side to A
// (any 127.0.0.0/8 address), so that several clients together hold more connections than one
// source address has ephemeral ports.
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { coveredTime, summarize } from "../../../src/bench/stats.ts";

const { values: o } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    "local-address": { type: "string" },
    port: { type: "string" },
    servername: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    "cert-list": { type: "string" },
    group: { type: "string", default: "SecP384r1MLKEM1024" },
    cipher: { type: "string" },
    hold: { type: "boolean", default: false },
    handshakes: { type: "string", default: "100" },
    concurrency: { type: "string", default: "4" },
    resume: { type: "boolean", default: false },
    bytes: { type: "string", default: "0" },
    "bytes-mode": { type: "string", default: "reply" },
    "duration-limit": { type: "string", default: "60" },
  },
});
const handshakes = Number(o.handshakes);
const concurrency = Number(o.concurrency);
const bytes = Number(o.bytes);
const mode = o["bytes-mode"];
const DATA_TIMEOUT_MS = 60_000;
const CLOSE_TIMEOUT_MS = 2_000;
const CHUNK_BYTES = 16_384;
const PATTERN_PERIOD = 251;
const PATTERN = Buffer.from(
  Array.from({ length: CHUNK_BYTES + PATTERN_PERIOD }, (_, i) => i % PATTERN_PERIOD),
);
const REPLY_LENGTH = /\((\d+) (?:바이트|bytes)\)\r?$/;

const baseOptions = {
  host: o.host,
  port: Number(o.port),
  servername: o.servername ?? o.host,
  ca: readFileSync(o.ca),
  ecdhCurve: o.group,
  minVersion: "TLSv1.3",
  rejectUnauthorized: true,
  ...(o.cipher ? { ciphers: o.cipher } : {}),
  ...(o["local-address"] ? { localAddress: o["local-address"] } : {}),
};
const identities = o["cert-list"]
  ? JSON.parse(readFileSync(o["cert-list"], "utf8")).map(({ cert, key }) => ({
    cert: readFileSync(cert),
    key: readFileSync(key),
  }))
  : o.cert
  ? [{ cert: readFileSync(o.cert), key: readFileSync(o.key) }]
  : [{}];
let nextIdentity = 0;
/** Sockets kept open by --hold. */
const held = [];
// Node's servername may not be an IP address; then only the certificate check uses it.
if (/^[\d.]+$|:/.test(baseOptions.servername)) {
  const ip = baseOptions.servername;
  delete baseOptions.servername;
  baseOptions.checkServerIdentity = (_, cert) => tls.checkServerIdentity(ip, cert);
}

/**
 * Tickets for --resume, as src/bench/ticket_pool.ts keeps them: each used once, newest first,
 * C×4 kept; when none is fresh, the newest one is offered again.
 */
const tickets = [];
let newestTicket;
let ticketReuses = 0;
function takeTicket() {
  if (tickets.length) return tickets.pop();
  if (newestTicket) ticketReuses++;
  return newestTicket;
}

/** One connection; resolves to {startMs, handshakeMs?, resumed?, data?, failure?}. */
function connection() {
  return new Promise((resolve) => {
    const result = { startMs: performance.now() };
    let phase = "handshake";
    let timer;
    const session = o.resume ? takeTicket() : undefined;
    const identity = identities[nextIdentity++ % identities.length];
    const socket = tls.connect({ ...baseOptions, ...identity, ...(session ? { session } : {}) });
    socket.setNoDelay(true); // as qsign bench does: no Nagle wait behind our Finished
    let finished = false;
    const finish = (failure) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (failure && !result.failure) result.failure = { phase, ...failure };
      socket.destroy();
      resolve(result);
    };
    const fail = (kind, message) => finish({ kind, message });
    const closeGracefully = () => {
      phase = "close";
      clearTimeout(timer);
      timer = setTimeout(() => {
        result.unclosed = true;
        finish();
      }, CLOSE_TIMEOUT_MS);
      socket.end();
    };
    if (o.resume) {
      socket.on("session", (ticket) => {
        tickets.push(ticket);
        newestTicket = ticket;
        if (tickets.length > 4 * concurrency) tickets.shift();
      });
    }
    socket.on("error", (e) => fail(e.code ?? e.name, e.message));
    // In sink mode the server's close after ours ends the data phase ("sinking").
    let sinkDone;
    socket.on("end", () => {
      if (phase === "close") finish();
      else if (phase === "sinking") sinkDone();
      else fail("early_eof", `server closed during ${phase}`);
    });
    socket.on("secureConnect", () => {
      result.handshakeMs = performance.now() - result.startMs;
      result.resumed = socket.isSessionReused();
      if (o.hold) {
        held.push(socket);
        clearTimeout(timer);
        finished = true;
        return resolve(result);
      }
      if (bytes === 0) return closeGracefully();
      phase = "data";
      const start = performance.now();
      timer = setTimeout(() => fail("timeout", "data phase timed out"), DATA_TIMEOUT_MS);
      let acknowledged = 0;
      let text = "";
      const done = () => {
        result.data = { start, end: performance.now(), sent: bytes };
        if (mode === "sink") finish();
        else closeGracefully();
      };
      socket.on("data", (chunk) => {
        if (phase !== "data" || mode === "sink") return; // sink: read and discard
        if (mode === "echo") {
          for (let i = 0; i < chunk.length; i++) {
            if (chunk[i] !== (acknowledged + i) % PATTERN_PERIOD) {
              return fail("echo_mismatch", `byte ${acknowledged + i} differs`);
            }
          }
          acknowledged += chunk.length;
        } else {
          text += chunk.toString("utf8");
          let newline;
          while ((newline = text.indexOf("\n")) >= 0) {
            const match = REPLY_LENGTH.exec(text.slice(0, newline));
            if (!match) return fail("unexpected_reply", text.slice(0, newline));
            acknowledged += Number(match[1]);
            text = text.slice(newline + 1);
          }
        }
        if (acknowledged >= bytes) done();
      });
      sinkDone = done;
      send(socket, bytes).then(() => {
        if (mode !== "sink" || phase !== "data") return;
        phase = "sinking";
        socket.end();
      });
    });
  });
}

/** Writes `total` pattern bytes with backpressure. */
async function send(socket, total) {
  for (let offset = 0; offset < total && !socket.destroyed;) {
    const size = Math.min(CHUNK_BYTES, total - offset);
    const start = offset % PATTERN_PERIOD;
    if (!socket.write(PATTERN.subarray(start, start + size))) {
      await new Promise((resolve) => socket.once("drain", resolve));
    }
    offset += size;
  }
}

if (o.resume) await Promise.all(Array.from({ length: concurrency }, connection));

const cpuBefore = process.cpuUsage();
const start = performance.now();
const deadline = start + Number(o["duration-limit"]) * 1000;
const results = [];
let started = 0;
async function worker() {
  while (started < handshakes && performance.now() < deadline) {
    started++;
    results.push(await connection());
  }
}
await Promise.all(Array.from({ length: Math.min(concurrency, handshakes) }, worker));
const durationMs = performance.now() - start;
const cpu = process.cpuUsage(cpuBefore);

const completed = results.filter((r) => r.handshakeMs !== undefined);
const resumed = completed.filter((r) => r.resumed).length;
const transfers = results.flatMap((r) => (r.data ? [r.data] : []));
const transferMs = coveredTime(transfers);
const bytesSent = transfers.reduce((total, t) => total + t.sent, 0);
const errors = new Map();
for (const { failure } of results) {
  if (!failure) continue;
  const key = `${failure.phase}/${failure.kind}`;
  const entry = errors.get(key) ?? { ...failure, count: 0, example: failure.message };
  delete entry.message;
  entry.count++;
  errors.set(key, entry);
}
process.stdout.write(
  JSON.stringify({
    client: {
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
      cpuPercent: ((cpu.user + cpu.system) / 1000 / durationMs) * 100,
      rssPeakBytes: process.resourceUsage().maxRSS * 1024,
    },
    stoppedBy: started < handshakes ? "time" : "count",
    durationMs,
    handshakes: {
      attempted: results.length,
      completed: completed.length,
      resumed,
      full: completed.length - resumed,
      failed: results.filter((r) => r.failure).length,
      ticketReuses,
      perSecond: completed.length / (durationMs / 1000),
    },
    latencyMs: summarize(completed.map((r) => r.handshakeMs)),
    throughput: bytes > 0
      ? {
        transfers: transfers.length,
        bytesSent,
        transferMs,
        bytesPerSecond: transferMs > 0 ? bytesSent / (transferMs / 1000) : 0,
      }
      : undefined,
    errors: [...errors.values()],
    unclosed: results.filter((r) => r.unclosed).length,
  }) + "\n",
);
if (o.hold) {
  // Hold until the parent closes stdin, then close every connection.
  process.stdin.resume();
  process.stdin.on("end", () => {
    for (const socket of held) socket.destroy();
    process.exit(0);
  });
}
