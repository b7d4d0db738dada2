/**
 * SubjectPublicKeyInfo and PKCS#8 containers for the key types whose raw form the providers
 * work with (ML-DSA, Ed25519, X25519, P-256, P-384), shared by both providers so that they
 * accept and reject exactly the same encodings. RSA keys go to WebCrypto as they are.
 */
import {
  DerError,
  encodeTlv,
  readChildren,
  readSingle,
  Tag,
  type Tlv,
  tlvBytes,
  tlvContent,
} from "./der.ts";
import { InvalidPrivateKeyError, InvalidPublicValueError } from "./provider.ts";

/** Key types with a raw form handled here. */
export type RawKeyType = "ML-DSA-44" | "ML-DSA-65" | "ML-DSA-87" | "Ed25519" | "X25519" | EcCurve;
export type EcCurve = "P-256" | "P-384";

const oid = (...bytes: number[]) => encodeTlv(Tag.oid, Uint8Array.from(bytes));
const NIST_SIG = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
const EC_PUBLIC_KEY = oid(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01);

/** The DER AlgorithmIdentifier of each key type (parameters absent except for EC curves). */
const ALGORITHM_IDENTIFIERS: Record<RawKeyType, Uint8Array> = {
  "ML-DSA-44": encodeTlv(Tag.sequence, oid(...NIST_SIG, 0x11)),
  "ML-DSA-65": encodeTlv(Tag.sequence, oid(...NIST_SIG, 0x12)),
  "ML-DSA-87": encodeTlv(Tag.sequence, oid(...NIST_SIG, 0x13)),
  "Ed25519": encodeTlv(Tag.sequence, oid(0x2b, 0x65, 0x70)),
  "X25519": encodeTlv(Tag.sequence, oid(0x2b, 0x65, 0x6e)),
  "P-256": encodeTlv(
    Tag.sequence,
    EC_PUBLIC_KEY,
    oid(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07),
  ),
  "P-384": encodeTlv(Tag.sequence, EC_PUBLIC_KEY, oid(0x2b, 0x81, 0x04, 0x00, 0x22)),
};

/** Raw public key lengths (EC: uncompressed point). */
export const PUBLIC_KEY_LENGTHS: Record<RawKeyType, number> = {
  "ML-DSA-44": 1312,
  "ML-DSA-65": 1952,
  "ML-DSA-87": 2592,
  "Ed25519": 32,
  "X25519": 32,
  "P-256": 65,
  "P-384": 97,
};

/** Raw private key lengths: ML-DSA seed, EdDSA/XDH private key, EC scalar. */
export const PRIVATE_KEY_LENGTHS: Record<RawKeyType, number> = {
  "ML-DSA-44": 32,
  "ML-DSA-65": 32,
  "ML-DSA-87": 32,
  "Ed25519": 32,
  "X25519": 32,
  "P-256": 32,
  "P-384": 48,
};

/** The group orders of the NIST curves (SEC 2), big-endian: private scalars lie in [1, n). */
const CURVE_ORDERS: Record<EcCurve, Uint8Array> = {
  "P-256": hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
  "P-384": hex(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
  ),
};

/** The bytes of a hexadecimal constant. */
export function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g)!, (byte) => parseInt(byte, 16));
}

/** Whether a big-endian scalar is in [1, n) for `curve`. */
export function scalarInRange(curve: EcCurve, scalar: Uint8Array): boolean {
  const order = CURVE_ORDERS[curve];
  if (scalar.length !== order.length || scalar.every((byte) => byte === 0)) return false;
  for (let i = 0; i < order.length; i++) {
    if (scalar[i] !== order[i]) return scalar[i] < order[i];
  }
  return false;
}

const isEc = (type: RawKeyType): type is EcCurve => type === "P-256" || type === "P-384";

/** Whether the AlgorithmIdentifier `algorithm`, read from `bytes`, is exactly `type`'s. */
function sameAlgorithm(bytes: Uint8Array, algorithm: Tlv, type: RawKeyType): boolean {
  const expected = ALGORITHM_IDENTIFIERS[type];
  const actual = tlvBytes(bytes, algorithm);
  return actual.length === expected.length && actual.every((byte, i) => byte === expected[i]);
}

/**
 * Checks the length (and, for EC, the uncompressed-point prefix TLS 1.3 key shares require,
 * RFC 8446 §4.2.8.2) of a raw public key; throws `InvalidPublicValueError`.
 */
export function checkRawPublicKey(type: RawKeyType, publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== PUBLIC_KEY_LENGTHS[type] || (isEc(type) && publicKey[0] !== 0x04)) {
    throw new InvalidPublicValueError(`${type} public key`);
  }
  return publicKey;
}

/** Wraps a raw public key in a SubjectPublicKeyInfo. */
export function encodeSpki(type: RawKeyType, publicKey: Uint8Array): Uint8Array {
  return encodeTlv(
    Tag.sequence,
    ALGORITHM_IDENTIFIERS[type],
    encodeTlv(Tag.bitString, Uint8Array.of(0), publicKey),
  );
}

/**
 * The raw public key inside a SubjectPublicKeyInfo of `type`; throws `InvalidPublicValueError`
 * for another algorithm, another curve, a malformed structure or a wrong-length key.
 */
export function decodeSpki(type: RawKeyType, spki: Uint8Array): Uint8Array {
  try {
    const body = readSingle(spki, Tag.sequence);
    const [algorithm, key, ...rest] = readChildren(body);
    const bits = key && tlvContent(body, key);
    if (
      rest.length || algorithm?.tag !== Tag.sequence || key?.tag !== Tag.bitString ||
      !sameAlgorithm(body, algorithm, type) ||
      bits[0] !== 0
    ) {
      throw new InvalidPublicValueError(`${type} SubjectPublicKeyInfo`);
    }
    return checkRawPublicKey(type, bits.subarray(1));
  } catch (error) {
    if (error instanceof DerError) {
      throw new InvalidPublicValueError(`${type} SubjectPublicKeyInfo`);
    }
    throw error;
  }
}

/**
 * Builds a PKCS#8 private key: ML-DSA in seed-only form, EdDSA/XDH as RFC 8410 says, EC as an
 * RFC 5915 ECPrivateKey (with the public point when given, as OpenSSL writes it).
 */
export function encodePkcs8(
  type: RawKeyType,
  privateKey: Uint8Array,
  ecPublicKey?: Uint8Array,
): Uint8Array {
  let inner: Uint8Array;
  if (type.startsWith("ML-DSA")) {
    inner = encodeTlv(Tag.context0, privateKey);
  } else if (isEc(type)) {
    const publicPart = ecPublicKey
      ? [encodeTlv(
        Tag.context1Constructed,
        encodeTlv(Tag.bitString, Uint8Array.of(0), ecPublicKey),
      )]
      : [];
    inner = encodeTlv(
      Tag.sequence,
      encodeTlv(Tag.integer, Uint8Array.of(1)),
      encodeTlv(Tag.octetString, privateKey),
      ...publicPart,
    );
  } else {
    inner = encodeTlv(Tag.octetString, privateKey);
  }
  return encodeTlv(
    Tag.sequence,
    encodeTlv(Tag.integer, Uint8Array.of(0)),
    ALGORITHM_IDENTIFIERS[type],
    encodeTlv(Tag.octetString, inner),
  );
}

/**
 * The raw private key (ML-DSA seed, EdDSA/XDH key, EC scalar) inside a PKCS#8 of `type`.
 * ML-DSA accepts the seed-only and seed-and-expanded forms (the seed is authoritative) and
 * refuses the expanded-only form; throws `InvalidPrivateKeyError`.
 */
export function decodePkcs8(type: RawKeyType, pkcs8: Uint8Array): Uint8Array {
  try {
    const body = readSingle(pkcs8, Tag.sequence);
    const [version, algorithm, privateKey] = readChildren(body);
    const versionValue = version && tlvContent(body, version);
    if (
      version?.tag !== Tag.integer || versionValue.length !== 1 || versionValue[0] > 1 ||
      algorithm?.tag !== Tag.sequence ||
      !sameAlgorithm(body, algorithm, type) ||
      privateKey?.tag !== Tag.octetString
    ) {
      throw new InvalidPrivateKeyError(`not a ${type} PKCS#8 key`);
    }
    const raw = innerPrivateKey(type, tlvContent(body, privateKey));
    if (raw.length !== PRIVATE_KEY_LENGTHS[type]) {
      throw new InvalidPrivateKeyError(`${type} private key of ${raw.length} bytes`);
    }
    return raw;
  } catch (error) {
    if (error instanceof DerError) {
      throw new InvalidPrivateKeyError(`${type} PKCS#8: ${error.message}`);
    }
    throw error;
  }
}

function innerPrivateKey(type: RawKeyType, inner: Uint8Array): Uint8Array {
  if (type.startsWith("ML-DSA")) {
    const [choice, ...others] = readChildren(inner);
    if (choice?.tag === Tag.context0 && !others.length) return tlvContent(inner, choice);
    if (choice?.tag === Tag.sequence && !others.length) {
      const both = tlvContent(inner, choice);
      const [seed, expanded, ...rest] = readChildren(both);
      if (seed?.tag === Tag.octetString && expanded?.tag === Tag.octetString && !rest.length) {
        return tlvContent(both, seed);
      }
    }
    throw new InvalidPrivateKeyError(
      `${type} private key is not in seed form (expanded-only keys are not supported)`,
    );
  }
  if (isEc(type)) {
    const ecPrivateKey = readSingle(inner, Tag.sequence);
    const [version, scalar] = readChildren(ecPrivateKey);
    if (
      version?.tag !== Tag.integer || tlvContent(ecPrivateKey, version)[0] !== 1 ||
      scalar?.tag !== Tag.octetString
    ) {
      throw new InvalidPrivateKeyError(`malformed ${type} ECPrivateKey`);
    }
    return tlvContent(ecPrivateKey, scalar);
  }
  return readSingle(inner, Tag.octetString);
}
