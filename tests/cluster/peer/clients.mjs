// Clients of the cluster test (Node 26, OpenSSL 3.5): `count` Q-TLS connections, `concurrency`
// at a time, from `local-address`, each sending `bytes` of a pattern (in `chunk`-byte writes,
// `pause-ms` apart) and reading the echo back in full; stops starting connections after
// `duration-ms`. With --resume each connection offers the newest ticket it got. Prints one JSON
// line: every connection's start and end (epoch ms), whether it resumed, its error if any, and
// whether the echo matched byte for byte (sha256).
//   node clients.mjs --port P --ca F [--cert F --key F] [--local-address A] [--count 10]
//     [--concurrency 1] [--bytes 1024] [--chunk 16384] [--pause-ms 0] [--resume]
//     [--gap-ms 0] [--stop-file F] [--duration-ms 60000] [--timeout-ms 30000]
// Each worker waits `gap-ms` between its connections, and none starts once `stop-file` exists.
import tls from "node:tls";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  options: {
    port: { type: "string" },
    ca: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    "local-address": { type: "string", default: "127.0.0.1" },
    count: { type: "string", default: "10" },
    concurrency: { type: "string", default: "1" },
    bytes: { type: "string", default: "1024" },
    chunk: { type: "string", default: "16384" },
    "pause-ms": { type: "string", default: "0" },
    resume: { type: "boolean", default: false },
    "gap-ms": { type: "string", default: "0" },
    "stop-file": { type: "string" },
    "duration-ms": { type: "string", default: "60000" },
    "timeout-ms": { type: "string", default: "30000" },
  },
});
const bytes = Number(o.bytes), chunk = Number(o.chunk), pauseMs = Number(o["pause-ms"]);
const options = {
  host: "127.0.0.1",
  port: Number(o.port),
  localAddress: o["local-address"],
  servername: "localhost",
  ca: readFileSync(o.ca),
  ...(o.cert ? { cert: readFileSync(o.cert), key: readFileSync(o.key) } : {}),
  ecdhCurve: "SecP384r1MLKEM1024",
  minVersion: "TLSv1.3",
};
const payload = Buffer.alloc(bytes);
for (let i = 0; i < bytes; i++) payload[i] = (i * 7 + 3) % 251;
const expected = createHash("sha256").update(payload).digest("hex");
let ticket;

function connection() {
  return new Promise((resolve) => {
    const result = { start: Date.now() };
    const socket = tls.connect({ ...options, ...(o.resume && ticket ? { session: ticket } : {}) });
    const hash = createHash("sha256");
    let received = 0;
    const timer = setTimeout(() => finish("timeout"), Number(o["timeout-ms"]));
    function finish(error) {
      if (result.end) return;
      clearTimeout(timer);
      result.end = Date.now();
      if (error) result.error = error;
      socket.destroy();
      resolve(result);
    }
    socket.on("session", (session) => (ticket = session));
    socket.on("error", (e) => finish(e.code ?? e.message));
    socket.on("end", () => finish(received < bytes ? "closed early" : undefined));
    socket.on("secureConnect", async () => {
      result.resumed = socket.isSessionReused();
      result.localPort = socket.localPort;
      for (let offset = 0; offset < bytes && !socket.destroyed; offset += chunk) {
        if (!socket.write(payload.subarray(offset, offset + chunk))) {
          await new Promise((r) => socket.once("drain", r));
        }
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      }
    });
    socket.on("data", (data) => {
      hash.update(data);
      received += data.length;
      if (received < bytes) return;
      result.exact = received === bytes && hash.digest("hex") === expected;
      socket.end();
      finish(result.exact ? undefined : "echo differs");
    });
  });
}

const deadline = Date.now() + Number(o["duration-ms"]);
const results = [];
let started = 0;
async function worker() {
  const stopped = () => o["stop-file"] !== undefined && existsSync(o["stop-file"]);
  while (started < Number(o.count) && Date.now() < deadline && !stopped()) {
    started++;
    results.push(await connection());
    if (Number(o["gap-ms"])) await new Promise((r) => setTimeout(r, Number(o["gap-ms"])));
  }
}
await Promise.all(Array.from({ length: Number(o.concurrency) }, worker));
process.stdout.write(JSON.stringify(results) + "\n");
