/**
 * Latency of one gateway request through the whole chain against the same request sent straight
 * to the backend in plaintext: nginx → `qsign connect --listen` sidecar → Q-TLS (hybrid ML-KEM,
 * ML-DSA both ways, resumed by the sidecar) → `qsign serve --mode proxy` → HTTP backend.
 *
 *   .tools/node_modules/.bin/deno run --allow-all tests/bench/gateway_latency.ts [--requests 300]
 *
 * Requests go one at a time over a kept-alive connection to nginx (to the backend, for the
 * direct case), so nginx opens a new sidecar connection, and the sidecar a new (resumed) Q-TLS
 * connection, for each. Prints p50/p90/p99 in ms for both and their ratio.
 */
import { parseArgs } from "node:util";
import { summarize } from "../../src/bench/stats.ts";
import { makePki } from "../daemon/support.ts";
import { tempDir } from "../support/env.ts";
import { backend, chain } from "../cluster/support.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { requests: { type: "string", default: "300" } },
});
const requests = Number(values.requests);
if (!Number.isInteger(requests) || requests < 10) throw new Error("--requests: 10 or more");

async function latencies(url: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < requests + 10; i++) {
    const start = performance.now();
    const response = await fetch(url);
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    if (i >= 10) out.push(performance.now() - start); // the first ten warm everything up
  }
  return out;
}

await using dir = await tempDir("qsign-gateway-bench-");
const pki = await makePki(`${dir.path}/pki`);
await using http = backend();
await using path = await chain(dir.path, pki, http, []);
const direct = summarize(await latencies(`http://127.0.0.1:${http.addr.port}/api/hello`))!;
const gateway = summarize(await latencies(path.url("/api/hello")))!;
const row = (name: string, s: typeof direct) =>
  `| ${name} | ${s.p50.toFixed(2)} | ${s.p90.toFixed(2)} | ${s.p99.toFixed(2)} |`;
console.log(`${requests} requests, one at a time\n`);
console.log("| path | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|");
console.log(row("direct plaintext to the backend", direct));
console.log(row("nginx → sidecar → Q-TLS → qsign serve → backend", gateway));
console.log(`\np50 ratio: ${(gateway.p50 / direct.p50).toFixed(1)}×`);
