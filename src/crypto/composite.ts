/**
 * Composite ML-DSA-65 + ECDSA-P384 signatures ("Dilithium3 + ECDSA"), as defined by
 * draft-ietf-lamps-pq-composite-sigs-13 for id-MLDSA65-ECDSA-P384-SHA512, and checked against
 * the test vector for that algorithm in the draft's repository (tests/pki/testdata).
 *
 * - OID 1.3.6.1.5.5.7.6.46; AlgorithmIdentifier parameters absent (in signatures and keys).
 * - Public key: the ML-DSA-65 public key (1952 bytes) || the uncompressed P-384 point (97 bytes),
 *   carried as the raw BIT STRING content of SubjectPublicKeyInfo.
 * - Message representative M' = Prefix || Label || len(ctx) (one byte) || ctx || SHA-512(M), with
 *   Prefix the ASCII "CompositeAlgorithmSignatures2025" and Label "COMPSIG-MLDSA65-ECDSA-P384-SHA512".
 * - Signature: ML-DSA-65.Sign(M', context = Label) (3309 bytes) || ECDSA-P384-SHA384(M') as a DER
 *   Ecdsa-Sig-Value.
 * - Private key (PKCS#8 privateKey content): the 32-byte ML-DSA seed || the RFC 5915 ECPrivateKey.
 *
 * The ML-DSA half needs a non-empty context, which Deno's WebCrypto refuses, so it signs and
 * verifies with @noble/post-quantum; the ECDSA half runs in WebCrypto.
 */
import "reflect-metadata";
import { AsnEcSignatureFormatter } from "@peculiar/x509";
import { ml_dsa65 } from "@noble/post-quantum/ml-dsa.js";
import { p384 } from "@noble/curves/nist.js";
import {
  bufferSource,
  children,
  concatBytes,
  DerError,
  encodeTlv,
  readTlv,
  tlvBytes,
  tlvContent,
} from "./der.ts";

/** The composite algorithm's object identifier. */
export const COMPOSITE_MLDSA65_ECDSA_P384_OID = "1.3.6.1.5.5.7.6.46";
/** The draft's name for the algorithm. */
export const COMPOSITE_MLDSA65_ECDSA_P384_NAME = "id-MLDSA65-ECDSA-P384-SHA512";
/** The domain-separation label, also the ML-DSA context. */
export const COMPOSITE_MLDSA65_ECDSA_P384_LABEL = "COMPSIG-MLDSA65-ECDSA-P384-SHA512";
/** The fixed prefix of every composite message representative. */
export const COMPOSITE_PREFIX = "CompositeAlgorithmSignatures2025";

export const MLDSA65_PUBLIC_KEY_LENGTH = 1952;
export const MLDSA65_SIGNATURE_LENGTH = 3309;
export const MLDSA_SEED_LENGTH = 32;
export const P384_POINT_LENGTH = 97;
export const P384_SCALAR_LENGTH = 48;
export const COMPOSITE_PUBLIC_KEY_LENGTH = MLDSA65_PUBLIC_KEY_LENGTH + P384_POINT_LENGTH;

const encoder = new TextEncoder();
const PREFIX_BYTES = encoder.encode(COMPOSITE_PREFIX);
const LABEL_BYTES = encoder.encode(COMPOSITE_MLDSA65_ECDSA_P384_LABEL);
const EMPTY = new Uint8Array(0);

// DER of the AlgorithmIdentifier SEQUENCE { OID 1.3.6.1.5.5.7.6.46 } and of namedCurve secp384r1.
const ALGORITHM_IDENTIFIER = new Uint8Array([
  0x30,
  0x0a,
  0x06,
  0x08,
  0x2b,
  0x06,
  0x01,
  0x05,
  0x05,
  0x07,
  0x06,
  0x2e,
]);
const SECP384R1_OID = new Uint8Array([0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]);

/** Raised for a composite key or key file that does not have the draft's layout. */
export class CompositeKeyError extends Error {
  constructor(problem: string) {
    super(`composite ${COMPOSITE_MLDSA65_ECDSA_P384_NAME} key: ${problem}`);
    this.name = "CompositeKeyError";
  }
}

/** Signs M' with the ML-DSA-65 half under `context` (the Label); returns the 3309-byte signature. */
export type MldsaComponentSign = (
  messageRepresentative: Uint8Array,
  context: Uint8Array,
) => Promise<Uint8Array>;

/** Signs M' with the ECDSA P-384 half using SHA-384; returns a DER Ecdsa-Sig-Value. */
export type EcdsaComponentSign = (messageRepresentative: Uint8Array) => Promise<Uint8Array>;

/** M' = Prefix || Label || len(ctx) || ctx || SHA-512(message). */
export async function compositeMessageRepresentative(
  message: Uint8Array,
  context: Uint8Array = EMPTY,
): Promise<Uint8Array> {
  if (context.length > 255) throw new RangeError("composite context longer than 255 bytes");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", bufferSource(message)));
  return concatBytes(PREFIX_BYTES, LABEL_BYTES, new Uint8Array([context.length]), context, digest);
}

/**
 * Signs `message` with both halves. Each half is a function, so either may live anywhere (a file
 * key, an HSM): `mldsaSign` receives M' and the context it must sign under.
 */
export async function compositeSign(
  mldsaSign: MldsaComponentSign,
  ecdsaSign: EcdsaComponentSign,
  message: Uint8Array,
  context: Uint8Array = EMPTY,
): Promise<Uint8Array> {
  const representative = await compositeMessageRepresentative(message, context);
  const [mldsaSignature, ecdsaSignature] = await Promise.all([
    mldsaSign(representative, LABEL_BYTES),
    ecdsaSign(representative),
  ]);
  if (mldsaSignature.length !== MLDSA65_SIGNATURE_LENGTH) {
    throw new Error(`ML-DSA-65 half returned ${mldsaSignature.length} bytes`);
  }
  return concatBytes(mldsaSignature, ecdsaSignature);
}

/**
 * Verifies a composite signature. `publicKey` is the SubjectPublicKeyInfo DER or the raw
 * composite public key. False for any malformed key or signature: both halves must verify.
 */
export async function compositeVerify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
  context: Uint8Array = EMPTY,
): Promise<boolean> {
  let halves;
  try {
    halves = splitCompositePublicKey(publicKey);
  } catch {
    return false;
  }
  if (signature.length <= MLDSA65_SIGNATURE_LENGTH) return false;
  const mldsaSignature = signature.subarray(0, MLDSA65_SIGNATURE_LENGTH);
  const ecdsaSignature = signature.subarray(MLDSA65_SIGNATURE_LENGTH);
  const representative = await compositeMessageRepresentative(message, context);
  const mldsaOk = ml_dsa65.verify(mldsaSignature, representative, halves.mldsa, {
    context: LABEL_BYTES,
  });
  return mldsaOk && await verifyEcdsaP384(halves.ecdsa, representative, ecdsaSignature);
}

async function verifyEcdsaP384(
  point: Uint8Array,
  message: Uint8Array,
  derSignature: Uint8Array,
): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey(
      "raw",
      bufferSource(point),
      { name: "ECDSA", namedCurve: "P-384" },
      false,
      ["verify"],
    );
    const raw = ecdsaDerToRaw(derSignature);
    return await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-384" },
      key,
      raw,
      bufferSource(message),
    );
  } catch {
    return false;
  }
}

const ecdsaFormatter = new AsnEcSignatureFormatter();
const P384_ALGORITHM = { name: "ECDSA", namedCurve: "P-384" } as Algorithm;

/** DER Ecdsa-Sig-Value → WebCrypto r||s for P-384. Throws on malformed input. */
function ecdsaDerToRaw(der: Uint8Array): Uint8Array<ArrayBuffer> {
  const raw = ecdsaFormatter.toWebSignature(P384_ALGORITHM, bufferSource(der));
  if (!raw || raw.byteLength !== 2 * P384_SCALAR_LENGTH) throw new DerError("ECDSA signature");
  return new Uint8Array(raw);
}

/** WebCrypto r||s → DER Ecdsa-Sig-Value for P-384. */
function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  return new Uint8Array(ecdsaFormatter.toAsnSignature(P384_ALGORITHM, bufferSource(raw))!);
}

/** The SubjectPublicKeyInfo DER for a composite public key. */
export function compositePublicKeySpki(
  mldsaPublicKey: Uint8Array,
  ecdsaPoint: Uint8Array,
): Uint8Array {
  if (mldsaPublicKey.length !== MLDSA65_PUBLIC_KEY_LENGTH) {
    throw new CompositeKeyError(`ML-DSA-65 public key of ${mldsaPublicKey.length} bytes`);
  }
  if (ecdsaPoint.length !== P384_POINT_LENGTH || ecdsaPoint[0] !== 0x04) {
    throw new CompositeKeyError("P-384 public key is not an uncompressed point");
  }
  const bitString = encodeTlv(0x03, concatBytes(new Uint8Array([0]), mldsaPublicKey, ecdsaPoint));
  return encodeTlv(0x30, concatBytes(ALGORITHM_IDENTIFIER, bitString));
}

/** Splits a composite public key (SubjectPublicKeyInfo DER or raw) into its two halves. */
export function splitCompositePublicKey(publicKey: Uint8Array): {
  mldsa: Uint8Array;
  ecdsa: Uint8Array;
} {
  const raw = publicKey.length === COMPOSITE_PUBLIC_KEY_LENGTH ? publicKey : spkiKeyBits(publicKey);
  if (raw.length !== COMPOSITE_PUBLIC_KEY_LENGTH) {
    throw new CompositeKeyError(`public key of ${raw.length} bytes`);
  }
  const ecdsa = raw.subarray(MLDSA65_PUBLIC_KEY_LENGTH);
  if (ecdsa[0] !== 0x04) throw new CompositeKeyError("P-384 half is not an uncompressed point");
  return { mldsa: raw.subarray(0, MLDSA65_PUBLIC_KEY_LENGTH), ecdsa };
}

function spkiKeyBits(spki: Uint8Array): Uint8Array {
  const outer = readTlv(spki);
  const [algorithm, bits] = children(spki, outer);
  if (!algorithm || !bits || bits.tag !== 0x03) {
    throw new CompositeKeyError("not a SubjectPublicKeyInfo");
  }
  if (!equalBytes(tlvBytes(spki, algorithm), ALGORITHM_IDENTIFIER)) {
    throw new CompositeKeyError("SubjectPublicKeyInfo is not id-MLDSA65-ECDSA-P384-SHA512");
  }
  const content = tlvContent(spki, bits);
  if (content[0] !== 0) throw new CompositeKeyError("public key BIT STRING has unused bits");
  return content.subarray(1);
}

/** The two private halves of a composite key. */
export interface CompositePrivateKeyParts {
  /** The ML-DSA-65 key generation seed ξ. */
  mldsaSeed: Uint8Array;
  /** The P-384 private scalar d, 48 bytes big-endian. */
  ecdsaScalar: Uint8Array;
}

/** PKCS#8 PrivateKeyInfo DER: privateKey = seed || ECPrivateKey (without the public key). */
export function encodeCompositePrivateKey(parts: CompositePrivateKeyParts): Uint8Array {
  if (parts.mldsaSeed.length !== MLDSA_SEED_LENGTH) throw new CompositeKeyError("seed length");
  if (parts.ecdsaScalar.length !== P384_SCALAR_LENGTH) throw new CompositeKeyError("scalar length");
  const ecPrivateKey = encodeTlv(
    0x30,
    concatBytes(
      encodeTlv(0x02, new Uint8Array([1])),
      encodeTlv(0x04, parts.ecdsaScalar),
      encodeTlv(0xa0, SECP384R1_OID),
    ),
  );
  return encodeTlv(
    0x30,
    concatBytes(
      encodeTlv(0x02, new Uint8Array([0])),
      ALGORITHM_IDENTIFIER,
      encodeTlv(0x04, concatBytes(parts.mldsaSeed, ecPrivateKey)),
    ),
  );
}

/** Reads a composite PKCS#8 (or OneAsymmetricKey) DER. Throws `CompositeKeyError`. */
export function decodeCompositePrivateKey(pkcs8: Uint8Array): CompositePrivateKeyParts {
  try {
    const outer = readTlv(pkcs8);
    const [version, algorithm, privateKey] = children(pkcs8, outer);
    if (version?.tag !== 0x02 || privateKey?.tag !== 0x04) throw new DerError("PrivateKeyInfo");
    if (!equalBytes(tlvBytes(pkcs8, algorithm), ALGORITHM_IDENTIFIER)) {
      throw new CompositeKeyError("not an id-MLDSA65-ECDSA-P384-SHA512 private key");
    }
    const content = tlvContent(pkcs8, privateKey);
    const mldsaSeed = content.slice(0, MLDSA_SEED_LENGTH);
    const ecBytes = content.subarray(MLDSA_SEED_LENGTH);
    const ec = readTlv(ecBytes);
    if (ec.end !== ecBytes.length) throw new DerError("trailing bytes after ECPrivateKey");
    const [ecVersion, scalar, ...rest] = children(ecBytes, ec);
    if (ecVersion?.tag !== 0x02 || scalar?.tag !== 0x04) throw new DerError("ECPrivateKey");
    const curve = rest.find((t) => t.tag === 0xa0);
    if (curve && !equalBytes(tlvContent(ecBytes, curve), SECP384R1_OID)) {
      throw new CompositeKeyError("ECDSA half is not on P-384");
    }
    const ecdsaScalar = tlvContent(ecBytes, scalar).slice();
    if (mldsaSeed.length !== MLDSA_SEED_LENGTH || ecdsaScalar.length !== P384_SCALAR_LENGTH) {
      throw new CompositeKeyError("component key lengths");
    }
    return { mldsaSeed, ecdsaScalar };
  } catch (e) {
    if (e instanceof CompositeKeyError) throw e;
    throw new CompositeKeyError((e as Error).message);
  }
}

/** Generates fresh key halves. */
export function generateCompositeKeyParts(): CompositePrivateKeyParts {
  return {
    mldsaSeed: crypto.getRandomValues(new Uint8Array(MLDSA_SEED_LENGTH)),
    ecdsaScalar: p384.utils.randomSecretKey(),
  };
}

/** The composite public key (raw, 2049 bytes) of a private key. */
export function compositePublicKey(parts: CompositePrivateKeyParts): Uint8Array {
  const { publicKey } = ml_dsa65.keygen(parts.mldsaSeed);
  return concatBytes(publicKey, p384.getPublicKey(parts.ecdsaScalar, false));
}

/** An ML-DSA-65 component signer from a key seed (@noble/post-quantum, which takes a context). */
export function mldsa65SeedSigner(seed: Uint8Array): MldsaComponentSign {
  const { secretKey } = ml_dsa65.keygen(seed);
  return (message, context) => Promise.resolve(ml_dsa65.sign(message, secretKey, { context }));
}

/** An ECDSA P-384 component signer over a WebCrypto key (SHA-384, DER output). */
export function ecdsaP384Signer(privateKey: CryptoKey): EcdsaComponentSign {
  return async (message) => {
    const raw = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-384" },
      privateKey,
      bufferSource(message),
    );
    return ecdsaRawToDer(new Uint8Array(raw));
  };
}

/** Imports the P-384 scalar of a composite key as a WebCrypto signing key. */
export function importEcdsaP384Scalar(scalar: Uint8Array): Promise<CryptoKey> {
  const point = p384.getPublicKey(scalar, false);
  const b64u = (b: Uint8Array) => btoaUrl(b);
  return crypto.subtle.importKey(
    "jwk",
    {
      kty: "EC",
      crv: "P-384",
      d: b64u(scalar),
      x: b64u(point.subarray(1, 49)),
      y: b64u(point.subarray(49)),
    },
    { name: "ECDSA", namedCurve: "P-384" },
    true,
    ["sign"],
  );
}

function btoaUrl(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
