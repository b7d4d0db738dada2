/** The strict DER of ECDSA signatures and key containers, beyond what Wycheproof's cases reach. */
import { deepEqual, equal, throws } from "node:assert/strict";
import {
  children,
  DerError,
  ecdsaDerToRaw,
  ecdsaRawToDer,
  encodeTlv,
  encodeUnsignedInteger,
  readTlv,
  tlvBytes,
  tlvContent,
} from "../../src/crypto/der.ts";
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

Deno.test("DER reader: offsets into the input, lengths strict and minimal, children bounded", () => {
  const inner = encodeTlv(0x04, new Uint8Array(200).fill(1));
  const outer = encodeTlv(0x30, Uint8Array.of(0x05, 0x00), inner);
  const tlv = readTlv(outer);
  deepEqual([tlv.tag, tlv.start, tlv.contentStart, tlv.end], [0x30, 0, 3, outer.length]);
  const [nullTlv, octets] = children(outer, tlv);
  deepEqual(tlvBytes(outer, nullTlv), Uint8Array.of(0x05, 0x00));
  equal(tlvContent(outer, octets).length, 200);
  equal(tlvContent(outer, octets).buffer, outer.buffer, "a view, not a copy");

  const refused = [
    "04", // header cut short
    "3f0100", // multi-byte tag
    "0480", // indefinite length
    "048100", // long form for a length under 128
    "04820080" + "00".repeat(128), // leading zero length byte
    "0485" + "0000000001" + "00", // five length bytes
    "040201", // value runs past the buffer
  ];
  for (const hex of refused) throws(() => readTlv(fromHex(hex)), DerError, hex);
  // A child may not run past its parent even when the buffer goes on.
  const overrun = fromHex("3003" + "0402ffff");
  throws(() => children(overrun, readTlv(overrun, 0, 2 + 3)), DerError);
  // Four length bytes are read when minimal.
  const big = new Uint8Array(6 + 0x1000000);
  big.set([0x04, 0x84, 0x01, 0x00, 0x00, 0x00]);
  equal(readTlv(big).end, big.length);
  deepEqual(encodeTlv(0x04, new Uint8Array(0x1000000)).subarray(0, 6), big.subarray(0, 6));
});

Deno.test("DER INTEGER encoding: minimal, positive, zero for an empty magnitude", () => {
  deepEqual(encodeUnsignedInteger(new Uint8Array(0)), fromHex("020100"));
  deepEqual(encodeUnsignedInteger(fromHex("000000")), fromHex("020100"));
  deepEqual(encodeUnsignedInteger(fromHex("0080")), fromHex("02020080"));
  deepEqual(encodeUnsignedInteger(fromHex("00017f")), fromHex("0202017f"));
});
