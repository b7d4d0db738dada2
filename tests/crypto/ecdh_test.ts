/**
 * ECDH P-256/P-384 and X25519 on every provider against Wycheproof. Key shares are raw points
 * (the TLS form): the "ecpoint" files feed them as they are; the ASN files wrap them in a
 * SubjectPublicKeyInfo, unwrapped here by the providers' own SPKI parser, so their malformed
 * encodings must be refused there or by the provider. The ASN files repeat the ecpoint files'
 * arithmetic cases (same keys, only wrapped): of those, every 8th is run, to keep the suite
 * fast (P-384 costs a few ms per case); all of their encoding cases are run.
 *
 * Outcomes: "valid" must give the vector's secret; "invalid" must throw InvalidPublicValueError;
 * "acceptable" may go either way (qsign refuses compressed points, as TLS 1.3 requires
 * uncompressed ones), but an all-zero X25519 secret must be refused (RFC 8446 §7.4.2).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { type EcdhName, InvalidPublicValueError } from "../../src/crypto/index.ts";
import { decodeSpki } from "../../src/crypto/keys.ts";
import { fromHex, hexField, label, type WycheproofTest, wycheproofTests } from "./vectors.ts";
import { ALL_PROVIDERS, noble, P384_VARIANTS } from "./providers.ts";

/** Wycheproof writes scalars as ASN.1 integers (maybe a leading 00); the provider wants fixed width. */
function fixedWidthScalar(hex: string, length: number): Uint8Array {
  const bytes = fromHex(hex.replace(/^(00)+/, "").padStart(2 * length, "0"));
  equal(bytes.length, length);
  return bytes;
}

const FILES: { file: string; curve: EcdhName; spki: boolean }[] = [
  { file: "ecdh_secp256r1_ecpoint_test", curve: "P-256", spki: false },
  { file: "ecdh_secp384r1_ecpoint_test", curve: "P-384", spki: false },
  { file: "ecdh_secp256r1_test", curve: "P-256", spki: true },
  { file: "ecdh_secp384r1_test", curve: "P-384", spki: true },
  { file: "x25519_test", curve: "X25519", spki: false },
];

/** Arithmetic cases the ASN files share with the ecpoint files. */
const ARITHMETIC_FLAGS = ["EdgeCaseDoubling", "EdgeCaseEphemeralKey", "EdgeCaseSharedSecret"];

function selected(spki: boolean, test: WycheproofTest, index: number): boolean {
  return !spki || index % 8 === 0 || !test.flags.some((flag) => ARITHMETIC_FLAGS.includes(flag));
}

const RUNS = [
  ...ALL_PROVIDERS.map((provider) => ({ provider, label: provider.name, files: FILES })),
  ...P384_VARIANTS.map(({ provider, label }) => ({
    provider,
    label,
    files: FILES.filter(({ curve }) => curve === "P-384"),
  })),
];

for (const { provider, label: name, files } of RUNS) {
  for (const { file, curve, spki } of files) {
    Deno.test(`${name}: ${file} (Wycheproof)`, async () => {
      const agreement = provider.keyAgreement(curve);
      const scalarLength = curve === "P-384" ? 48 : 32;
      let agreed = 0;
      for (const [index, { test }] of (await wycheproofTests(file)).entries()) {
        if (!selected(spki, test, index)) continue;
        const pair = await agreement.keyPairFromPrivateKey(
          fixedWidthScalar(test.private as string, scalarLength),
        );
        let secret: Uint8Array | undefined;
        let error: unknown;
        try {
          const peer = hexField(test, "public");
          secret = await pair.deriveSharedSecret(spki ? decodeSpki(curve, peer) : peer);
        } catch (thrown) {
          error = thrown;
        }
        if (secret) {
          ok(test.result !== "invalid", label(file, test));
          ok(!test.flags.includes("ZeroSharedSecret"), label(file, test));
          deepEqual(secret, hexField(test, "shared"), label(file, test));
          agreed++;
        } else {
          ok(test.result !== "valid", `${label(file, test)}: ${error}`);
          ok(error instanceof InvalidPublicValueError, label(file, test));
        }
      }
      ok(agreed > 20);
    });
  }
}

for (const provider of ALL_PROVIDERS) {
  Deno.test(`${provider.name}: X25519 RFC 7748 §6.1 exchange from fixed private keys`, async () => {
    const x25519 = provider.keyAgreement("X25519");
    const alice = await x25519.keyPairFromPrivateKey(
      fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
    );
    const bob = await x25519.keyPairFromPrivateKey(
      fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
    );
    deepEqual(
      alice.publicKey,
      fromHex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"),
    );
    deepEqual(
      bob.publicKey,
      fromHex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"),
    );
    const shared = fromHex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    deepEqual(await alice.deriveSharedSecret(bob.publicKey), shared);
    deepEqual(await bob.deriveSharedSecret(alice.publicKey), shared);
  });
}

for (const { provider, label } of P384_VARIANTS) {
  Deno.test(`${label}: agreement with noble both ways`, async () => {
    const a = await provider.keyAgreement("P-384").generateKeyPair();
    const b = await noble.keyAgreement("P-384").generateKeyPair();
    deepEqual(await a.deriveSharedSecret(b.publicKey), await b.deriveSharedSecret(a.publicKey));
  });
}
