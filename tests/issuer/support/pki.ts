/** A throwaway embedded-CA directory (Root → Server and Client intermediates) for tests. */
import { initPki } from "../../../src/pki/ca.ts";
import type { KeyAlgorithm } from "../../../src/pki/keys.ts";

/**
 * Creates a PKI in a fresh temp dir. ECDSA P-256 by default, like the classical chains Vault
 * issues; the caller removes `dir`.
 */
export async function makeTestPki(alg: KeyAlgorithm = "ecdsa-p256"): Promise<{ dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "qsign-test-pki-" });
  await initPki({ dir, alg });
  return { dir };
}
