/**
 * HSM signatures per second through the session pool: ECDSA P-384 (the server key of the
 * production flow) on a throwaway SoftHSM2 token, 32 signs outstanding at a time, for pools of
 * 1 and 4 sessions (and `--sessions N` for another size).
 *
 *   deno run -A tests/bench/hsm_bench.ts [--signatures 2000] [--sessions 8]
 *
 * Bounded: each run stops after `--signatures` signatures or 30 seconds, whichever is first.
 */
import { parseArgs } from "node:util";
import { openHsmSigner } from "../../src/hsm/signer.ts";
import { createTestToken, generateKeys, MODULE } from "../hsm/softhsm.ts";

const ECDSA_P384_SHA384 = 0x0503;
const OUTSTANDING = 32;
const TIME_LIMIT_MS = 30_000;

const { values } = parseArgs({
  args: Deno.args,
  options: { signatures: { type: "string", default: "2000" }, sessions: { type: "string" } },
});
const total = Number(values.signatures);
const poolSizes = [...new Set([1, 4, ...(values.sessions ? [Number(values.sessions)] : [])])];

await using token = await createTestToken("bench");
await generateKeys(token, [{ type: "ec-p384", label: "bench", id: "01" }]);
const message = new TextEncoder().encode("CertificateVerify content of a TLS 1.3 handshake");

console.log(`ECDSA P-384 in SoftHSM2 ${MODULE}, ${OUTSTANDING} signs outstanding`);
for (const sessions of poolSizes) {
  const hsm = await openHsmSigner({
    module: MODULE,
    token: token.label,
    keyLabel: "bench",
    pin: "env:QSIGN_TEST_PIN",
    sessions,
    healthCheckIntervalMs: 0,
  });
  try {
    await hsm.signer.sign(ECDSA_P384_SHA384, message); // warm-up: first-use costs stay out
    let started = 0;
    let done = 0;
    const begin = performance.now();
    const worker = async () => {
      while (started < total && performance.now() - begin < TIME_LIMIT_MS) {
        started++;
        await hsm.signer.sign(ECDSA_P384_SHA384, message);
        done++;
      }
    };
    await Promise.all(Array.from({ length: OUTSTANDING }, worker));
    const seconds = (performance.now() - begin) / 1000;
    console.log(
      `pool of ${String(sessions).padStart(2)} sessions: ${done} signatures in ${
        seconds.toFixed(2)
      } s = ${(done / seconds).toFixed(0)} signatures/s`,
    );
  } finally {
    await hsm.close();
  }
}
