/**
 * Time of verifying a typical ML-DSA-65 chain (root → intermediate → server leaf, as a TLS
 * handshake presents it) with `verifyChain` and a `TrustStore` built once: the same chain again,
 * and leaves never seen before; and through the TLS engine's default verifier with its verdict
 * cache. No assertions: prints milliseconds.
 * Run: deno run -A tests/bench/verify_bench.ts [ROUNDS]
 */
import "reflect-metadata";
import { TrustStore, verifyChain } from "../../src/pki/verify.ts";
import { ChainPeerVerifier } from "../../src/tls/peer.ts";
import { make, makeChain, SERVER_AUTH } from "../pki/helpers.ts";

const rounds = Number(Deno.args[0] ?? 200);
const { root, intermediate, leaf } = await makeChain("mldsa65");
const store = await TrustStore.create([root.der]);
const options = {
  trustAnchors: store,
  intermediates: [intermediate.der],
  purpose: "server" as const,
  host: "leaf.example.test",
};

async function time(label: string, run: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 10; i++) await run(); // warm-up: parse caches, imported keys, JIT
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    await run();
    samples.push(performance.now() - started);
  }
  samples.sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const median = samples[Math.floor(samples.length / 2)];
  console.log(
    `${label}: mean ${mean.toFixed(3)} ms, median ${median.toFixed(3)} ms over ${rounds} rounds`,
  );
}

await time(
  "verifyChain, ML-DSA-65 root → intermediate → leaf, the same chain again",
  () => verifyChain(leaf.der, options),
);
// Leaves never seen before: each verification parses the leaf and checks its signature.
const fresh = await Promise.all(
  Array.from({ length: rounds + 10 }, () =>
    make({
      subject: "CN=leaf.example.test",
      issuer: intermediate,
      eku: [SERVER_AUTH],
      sans: ["DNS:leaf.example.test"],
    })),
);
let next = 0;
await time(
  "verifyChain, ML-DSA-65 root → intermediate → a leaf not seen before",
  () => verifyChain(fresh[next++].der, options),
);
const verifier = new ChainPeerVerifier([root.der]);
await time(
  "ChainPeerVerifier, cached verdict",
  () =>
    verifier.verify([leaf.der, intermediate.der], {
      role: "client",
      serverName: "leaf.example.test",
    }),
);
