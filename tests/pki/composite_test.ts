/**
 * Composite ML-DSA-65 + ECDSA-P384: the draft's own test vector (not our word), and our
 * signatures round-tripping through the same verifier.
 */
import { equal, ok, throws } from "node:assert/strict";
import {
  COMPOSITE_MLDSA65_ECDSA_P384_OID,
  CompositeKeyError,
  compositePublicKey,
  compositePublicKeySpki,
  compositeSign,
  compositeVerify,
  decodeCompositePrivateKey,
  ecdsaP384Signer,
  encodeCompositePrivateKey,
  generateCompositeKeyParts,
  importEcdsaP384Scalar,
  MLDSA65_SIGNATURE_LENGTH,
  mldsa65SeedSigner,
  splitCompositePublicKey,
} from "../../src/crypto/composite.ts";

const vector = JSON.parse(
  await Deno.readTextFile(
    new URL("./testdata/composite_mldsa65_ecdsa_p384_vector.json", import.meta.url),
  ),
);
const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

Deno.test("the draft's id-MLDSA65-ECDSA-P384-SHA512 vector verifies with the key derived from its sk", async () => {
  const parts = decodeCompositePrivateKey(b64(vector.sk_pkcs8));
  const publicKey = compositePublicKey(parts);
  ok(await compositeVerify(publicKey, b64(vector.m), b64(vector.s)));
  // The same key as a SubjectPublicKeyInfo, as certificates carry it.
  const halves = splitCompositePublicKey(publicKey);
  ok(
    await compositeVerify(
      compositePublicKeySpki(halves.mldsa, halves.ecdsa),
      b64(vector.m),
      b64(vector.s),
    ),
  );
});

Deno.test("the vector's PKCS#8 private key re-encodes byte for byte", () => {
  const parts = decodeCompositePrivateKey(b64(vector.sk_pkcs8));
  equal(btoa(String.fromCharCode(...encodeCompositePrivateKey(parts))), vector.sk_pkcs8);
  // The raw sk of the vector is seed || ECPrivateKey.
  equal(btoa(String.fromCharCode(...b64(vector.sk_pkcs8).subarray(-96))), vector.sk);
});

Deno.test("a changed message, signature byte or context fails", async () => {
  const parts = decodeCompositePrivateKey(b64(vector.sk_pkcs8));
  const publicKey = compositePublicKey(parts);
  const message = b64(vector.m);
  const signature = b64(vector.s);
  equal(
    await compositeVerify(publicKey, new TextEncoder().encode("The quick brown fox"), signature),
    false,
  );
  for (const index of [5, MLDSA65_SIGNATURE_LENGTH + 10]) {
    const tampered = signature.slice();
    tampered[index] ^= 0x01;
    equal(await compositeVerify(publicKey, message, tampered), false, `byte ${index}`);
  }
  equal(await compositeVerify(publicKey, message, signature, new Uint8Array([1])), false);
  equal(await compositeVerify(publicKey, message, signature.subarray(0, 100)), false);
});

Deno.test("our signatures verify, with and without a context", async () => {
  const parts = generateCompositeKeyParts();
  const sign = (m: Uint8Array, ctx?: Uint8Array) =>
    importEcdsaP384Scalar(parts.ecdsaScalar).then((ec) =>
      compositeSign(mldsa65SeedSigner(parts.mldsaSeed), ecdsaP384Signer(ec), m, ctx)
    );
  const publicKey = compositePublicKey(parts);
  const message = new TextEncoder().encode("QSIGN 서버 응답");
  ok(await compositeVerify(publicKey, message, await sign(message)));
  const ctx = new TextEncoder().encode("qsign");
  const withContext = await sign(message, ctx);
  ok(await compositeVerify(publicKey, message, withContext, ctx));
  equal(await compositeVerify(publicKey, message, withContext), false);
});

Deno.test("keys of the wrong shape are refused", () => {
  throws(() => splitCompositePublicKey(new Uint8Array(100)), CompositeKeyError);
  throws(() => decodeCompositePrivateKey(new Uint8Array([0x30, 0x00])), CompositeKeyError);
  equal(COMPOSITE_MLDSA65_ECDSA_P384_OID, "1.3.6.1.5.5.7.6.46");
});
