/**
 * Time of reading an ML-DSA-65 leaf with CertificateView and with @peculiar/x509 (each reading
 * what path validation reads: names, and the extensions decoded), and of verifying a typical
 * ML-DSA-65 chain (root → intermediate → server leaf, as a TLS handshake presents it) with
 * `verifyChain` and a `TrustStore` built once: the same chain again, and leaves never seen
 * before; and through the TLS engine's default verifier with its verdict cache. No assertions:
 * prints microseconds and milliseconds.
 * Run: deno run -A tests/bench/verify_bench.ts [ROUNDS]
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { CertificateView } from "../../src/pki/certificate_view.ts";
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

function timeParse(label: string, parse: () => unknown): number {
  for (let i = 0; i < 20; i++) parse();
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    parse();
    samples.push((performance.now() - started) * 1000);
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)];
  console.log(`${label}: median ${median.toFixed(1)} µs over ${rounds} rounds`);
  return median;
}

const view = timeParse("CertificateView, ML-DSA-65 leaf, fields path validation reads", () => {
  const cert = CertificateView.parse(leaf.der);
  return [
    cert.subject,
    cert.issuer,
    cert.subjectKeyIdentifier,
    cert.authorityKeyIdentifier,
    cert.basicConstraints,
    cert.keyUsage,
    cert.extendedKeyUsage,
    cert.certificatePolicies,
    cert.crlDistributionPoints,
    cert.subjectAltName,
  ];
});
const peculiar = timeParse("@peculiar/x509, ML-DSA-65 leaf, the same fields", () => {
  const cert = new x509.X509Certificate(leaf.der as Uint8Array<ArrayBuffer>);
  return [cert.subject, cert.issuer, cert.extensions];
});
console.log(`CertificateView is ${(peculiar / view).toFixed(0)}× cheaper`);

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
