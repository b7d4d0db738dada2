/**
 * ECDSA and RSA-PSS verification on every provider against Wycheproof. The providers take DER
 * ECDSA signatures (as TLS and X.509 carry them): the DER files are used as they are, the
 * P1363 (r || s) files through the provider's own converter, where a wrong-length r || s has no
 * DER form and must be an invalid vector. Not used: ecdsa_secp384r1_sha256 (P-384 with SHA-256
 * is no TLS 1.3 scheme, so the provider has no such algorithm).
 */
import { equal, ok } from "node:assert/strict";
import type { SignatureAlgorithmName } from "../../src/crypto/index.ts";
import { ecdsaRawToDer } from "../../src/crypto/der.ts";
import { ALL_PROVIDERS } from "./providers.ts";
import { hexField, label, wycheproofTests } from "./vectors.ts";

const FILES: { file: string; algorithm: SignatureAlgorithmName; p1363Length?: number }[] = [
  { file: "ecdsa_secp256r1_sha256_test", algorithm: "ECDSA-P256-SHA256" },
  { file: "ecdsa_secp384r1_sha384_test", algorithm: "ECDSA-P384-SHA384" },
  { file: "ecdsa_secp256r1_sha256_p1363_test", algorithm: "ECDSA-P256-SHA256", p1363Length: 64 },
  { file: "ecdsa_secp384r1_sha384_p1363_test", algorithm: "ECDSA-P384-SHA384", p1363Length: 96 },
  { file: "rsa_pss_2048_sha256_mgf1_32_test", algorithm: "RSA-PSS-SHA256" },
];

for (const provider of ALL_PROVIDERS) {
  for (const { file, algorithm, p1363Length } of FILES) {
    Deno.test(`${provider.name}: ${file} (Wycheproof)`, async () => {
      const verifier = provider.signature(algorithm);
      let accepted = 0;
      for (const { group, test } of await wycheproofTests(file)) {
        let signature = hexField(test, "sig");
        if (p1363Length !== undefined) {
          if (signature.length !== p1363Length) {
            equal(test.result, "invalid", label(file, test));
            continue;
          }
          signature = ecdsaRawToDer(signature);
        }
        const verified = await verifier.verify(
          hexField(group, "publicKeyDer"),
          hexField(test, "msg"),
          signature,
        );
        // No "acceptable" vectors in these files: every one is valid or invalid.
        equal(verified, test.result === "valid", label(file, test));
        if (verified) accepted++;
      }
      ok(accepted > 30);
    });
  }
}
