/** The strict DER of ECDSA signatures and key containers, beyond what Wycheproof's cases reach. */
import { deepEqual, equal, throws } from "node:assert/strict";
import { DerError, ecdsaDerToRaw, ecdsaRawToDer } from "../../src/crypto/der.ts";
import { decodePkcs8, decodeSpki, encodePkcs8, encodeSpki } from "../../src/crypto/keys.ts";
import { InvalidPrivateKeyError, InvalidPublicValueError } from "../../src/crypto/index.ts";
import { fromHex } from "./vectors.ts";

Deno.test("ECDSA r || s to DER and back: sign bits, leading zeros, minimal integers", () => {
  const raw = new Uint8Array(64);
  raw[0] = 0x80; // r needs a 0x00 pad to stay positive
  raw[63] = 0x05; // s = 5: 31 leading zero bytes dropped
  const der = ecdsaRawToDer(raw);
  deepEqual(der, fromHex("3026" + "022100" + "80" + "00".repeat(31) + "020105"));
  deepEqual(ecdsaDerToRaw(der, 32), raw);
});

Deno.test("ECDSA DER: non-DER encodings are refused", () => {
  const refused = [
    "300702020005020105", // r = 00 05: a non-minimal INTEGER
    "3006020180020105", // r = 0x80: a negative INTEGER
    "30050200020105", // r empty
    "308106020105020105", // long-form length under 128
    "300602010502010500", // trailing byte
    "3009020105020105020105", // three INTEGERs
    "3006040105020105", // OCTET STRING instead of INTEGER
    "30260221" + "01".repeat(33) + "020105", // r wider than the curve
  ];
  for (const hex of refused) throws(() => ecdsaDerToRaw(fromHex(hex), 32), DerError, hex);
});

Deno.test("SPKI and PKCS#8: round trips, and the wrong algorithm or length is refused", () => {
  const point = new Uint8Array(65).fill(7);
  point[0] = 4;
  deepEqual(decodeSpki("P-256", encodeSpki("P-256", point)), point);
  throws(() => decodeSpki("P-384", encodeSpki("P-256", point)), InvalidPublicValueError);
  throws(
    () => decodeSpki("ML-DSA-44", encodeSpki("ML-DSA-44", new Uint8Array(1311))),
    InvalidPublicValueError,
  );
  const compressed = point.slice(0, 33);
  compressed[0] = 2;
  throws(() => decodeSpki("P-256", encodeSpki("P-256", compressed)), InvalidPublicValueError);

  const seed = new Uint8Array(32).fill(9);
  deepEqual(decodePkcs8("ML-DSA-65", encodePkcs8("ML-DSA-65", seed)), seed);
  equal(encodePkcs8("ML-DSA-65", seed).length, 54);
  throws(() => decodePkcs8("ML-DSA-87", encodePkcs8("ML-DSA-65", seed)), InvalidPrivateKeyError);
  const scalar = new Uint8Array(48).fill(3);
  deepEqual(decodePkcs8("P-384", encodePkcs8("P-384", scalar, new Uint8Array(97))), scalar);
  throws(
    () => decodePkcs8("P-384", encodePkcs8("P-384", scalar.subarray(1))),
    InvalidPrivateKeyError,
  );
});
