/**
 * Sizes, per-algorithm parameters, argument checks and randomness shared by both providers, so
 * that they accept and reject the same inputs with the same errors.
 */
import type { RawKeyType } from "./keys.ts";
import {
  type Aead,
  AeadAuthError,
  type AeadName,
  type EcdhName,
  type HashName,
  InvalidPublicValueError,
  type KemName,
  type SignatureAlgorithmName,
  type SignatureOptions,
} from "./provider.ts";

export const HASH_LENGTHS: Record<HashName, number> = {
  "SHA-256": 32,
  "SHA-384": 48,
  "SHA-512": 64,
};

/** FIPS 203 Table 3 sizes. */
export const KEM_SIZES: Record<KemName, { publicKey: number; ciphertext: number }> = {
  "ML-KEM-512": { publicKey: 800, ciphertext: 768 },
  "ML-KEM-768": { publicKey: 1184, ciphertext: 1088 },
  "ML-KEM-1024": { publicKey: 1568, ciphertext: 1568 },
};
/** ML-KEM key generation seed: d || z. */
export const KEM_SEED_LENGTH = 64;

export const AEAD_KEY_LENGTHS: Record<AeadName, number> = {
  "AES-128-GCM": 16,
  "AES-256-GCM": 32,
  "ChaCha20-Poly1305": 32,
};
/** TLS 1.3 (RFC 8446 §5.3) uses 96-bit nonces and 128-bit tags for every suite. */
export const AEAD_NONCE_LENGTH = 12;
export const AEAD_TAG_LENGTH = 16;

/** Shared-secret size of each key agreement (the x-coordinate for the NIST curves). */
export const ECDH_SECRET_LENGTHS: Record<EcdhName, number> = {
  "X25519": 32,
  "P-256": 32,
  "P-384": 48,
};

/** How each signature algorithm is computed. */
export type SignatureParams =
  | { family: "ML-DSA"; keyType: "ML-DSA-44" | "ML-DSA-65" | "ML-DSA-87" }
  | { family: "ECDSA"; keyType: "P-256" | "P-384"; hash: HashName }
  | { family: "Ed25519"; keyType: "Ed25519" }
  | { family: "RSA-PSS" | "RSA-PKCS1"; hash: HashName };

export const SIGNATURES: Record<SignatureAlgorithmName, SignatureParams> = {
  "ML-DSA-44": { family: "ML-DSA", keyType: "ML-DSA-44" },
  "ML-DSA-65": { family: "ML-DSA", keyType: "ML-DSA-65" },
  "ML-DSA-87": { family: "ML-DSA", keyType: "ML-DSA-87" },
  "ECDSA-P256-SHA256": { family: "ECDSA", keyType: "P-256", hash: "SHA-256" },
  "ECDSA-P384-SHA384": { family: "ECDSA", keyType: "P-384", hash: "SHA-384" },
  "Ed25519": { family: "Ed25519", keyType: "Ed25519" },
  "RSA-PSS-SHA256": { family: "RSA-PSS", hash: "SHA-256" },
  "RSA-PSS-SHA384": { family: "RSA-PSS", hash: "SHA-384" },
  "RSA-PSS-SHA512": { family: "RSA-PSS", hash: "SHA-512" },
  "RSA-PKCS1-SHA256": { family: "RSA-PKCS1", hash: "SHA-256" },
  "RSA-PKCS1-SHA384": { family: "RSA-PKCS1", hash: "SHA-384" },
};

/** RSA keys qsign generates (the PKI's `rsa-3072`). */
export const RSA_MODULUS_BITS = 3072;

/** Cryptographically secure random bytes (getRandomValues, which fills 65536 bytes per call). */
export function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, offset + 65536));
  }
  return bytes;
}

/** Throws `RangeError` unless `key` fits `alg` (our own caller's mistake, not peer input). */
export function checkAeadKey(alg: AeadName, key: Uint8Array): void {
  if (key.length !== AEAD_KEY_LENGTHS[alg]) {
    throw new RangeError(`${alg} key must be ${AEAD_KEY_LENGTHS[alg]} bytes, got ${key.length}`);
  }
}

/** Throws `RangeError` for a nonce that is not TLS's 12 bytes. */
export function checkNonce(nonce: Uint8Array): void {
  if (nonce.length !== AEAD_NONCE_LENGTH) {
    throw new RangeError(`AEAD nonce must be ${AEAD_NONCE_LENGTH} bytes, got ${nonce.length}`);
  }
}

/** The plaintext length of an AEAD's `sealInto`; throws `RangeError` if `out` does not fit it. */
export function sealedLength(parts: readonly Uint8Array[], out: Uint8Array): number {
  const length = parts.reduce((total, part) => total + part.length, 0);
  if (out.length !== length + AEAD_TAG_LENGTH) {
    throw new RangeError(
      `AEAD output must be ${
        length + AEAD_TAG_LENGTH
      } bytes (plaintext and tag), got ${out.length}`,
    );
  }
  return length;
}

/**
 * The plaintext length of an AEAD's `openIntoSync`: `AeadAuthError` for a ciphertext shorter than
 * its tag, `RangeError` if `out` does not fit it.
 */
export function openedLength(ciphertext: Uint8Array, out: Uint8Array): number {
  const length = ciphertext.length - AEAD_TAG_LENGTH;
  if (length < 0) throw new AeadAuthError();
  if (out.length !== length) {
    throw new RangeError(
      `AEAD output must be ${length} bytes (the ciphertext without its tag), got ${out.length}`,
    );
  }
  return length;
}

/** `openIntoSync` for an AEAD that opens into new arrays only (noble, node:crypto): a copy. */
export function openIntoByCopy(
  aead: Pick<Aead, "openSync">,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
  out: Uint8Array,
): void {
  openedLength(ciphertext, out);
  try {
    out.set(aead.openSync(nonce, ciphertext, aad));
  } catch (e) {
    out.fill(0);
    throw e;
  }
}

/**
 * The async half of `Aead` for implementations that compute synchronously (libcrypto, noble):
 * each async operation is its `…Sync` twin, so a subclass writes only the synchronous ones. They
 * are `async` without awaiting so that a synchronous throw reaches the caller as a rejection.
 */
export abstract class SyncAead implements Aead {
  readonly tagLength = AEAD_TAG_LENGTH;
  readonly asyncFrom = Infinity;

  abstract sealIntoSync(
    nonce: Uint8Array,
    parts: readonly Uint8Array[],
    aad: Uint8Array,
    out: Uint8Array,
  ): void;
  abstract openSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array;
  abstract dispose(): void;

  sealSync(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    const out = new Uint8Array(plaintext.length + AEAD_TAG_LENGTH);
    this.sealIntoSync(nonce, [plaintext], aad, out);
    return out;
  }

  // deno-lint-ignore require-await
  async seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    return this.sealSync(nonce, plaintext, aad);
  }

  // deno-lint-ignore require-await
  async sealInto(
    nonce: Uint8Array,
    parts: readonly Uint8Array[],
    aad: Uint8Array,
    out: Uint8Array,
  ): Promise<void> {
    this.sealIntoSync(nonce, parts, aad, out);
  }

  // deno-lint-ignore require-await
  async open(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    return this.openSync(nonce, ciphertext, aad);
  }

  openIntoSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array, out: Uint8Array): void {
    openIntoByCopy(this, nonce, ciphertext, aad, out);
  }
}

/** Throws `RangeError` for an HKDF-Expand length RFC 5869 does not allow. */
export function checkExpandLength(alg: HashName, length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > 255 * HASH_LENGTHS[alg]) {
    throw new RangeError(`HKDF-Expand length ${length} out of range for ${alg}`);
  }
}

/** Throws `RangeError` for a seed that is not ML-KEM's 64 bytes. */
export function checkKemSeed(seed: Uint8Array): void {
  if (seed.length !== KEM_SEED_LENGTH) {
    throw new RangeError(`ML-KEM seed must be ${KEM_SEED_LENGTH} bytes, got ${seed.length}`);
  }
}

/** Throws `InvalidPublicValueError` unless `value` has exactly `length` bytes. */
export function checkPeerLength(what: string, value: Uint8Array, length: number): void {
  if (value.length !== length) throw new InvalidPublicValueError(what);
}

/** RFC 8446 §7.4.2: an all-zero X25519 result means a low-order peer point; abort. */
export function rejectAllZero(secret: Uint8Array): Uint8Array {
  if (secret.every((byte) => byte === 0)) {
    throw new InvalidPublicValueError("X25519 public key (all-zero shared secret)");
  }
  return secret;
}

/**
 * The non-empty context string of `options`, or undefined for none. Throws `RangeError` for a
 * context on an algorithm without one or, when signing, over 255 bytes (FIPS 204 §5.2).
 */
export function signingContext(
  params: SignatureParams,
  options?: SignatureOptions,
): Uint8Array | undefined {
  const context = options?.context;
  if (!context?.length) return undefined;
  if (params.family !== "ML-DSA") {
    throw new RangeError(`a context string is only defined for ML-DSA, not ${params.family}`);
  }
  if (context.length > 255) throw new RangeError("ML-DSA context string over 255 bytes");
  return context;
}

/** Whether `options` carries a context FIPS 204 verification rejects outright (over 255 bytes). */
export function contextTooLong(options?: SignatureOptions): boolean {
  return (options?.context?.length ?? 0) > 255;
}

/** The raw key type of a signature algorithm, or undefined for RSA (WebCrypto parses those). */
export function rawKeyType(params: SignatureParams): RawKeyType | undefined {
  return "keyType" in params ? params.keyType : undefined;
}

/** Builds each algorithm object once, on first use. */
export function memoize<K extends string, V>(make: (key: K) => V): (key: K) => V {
  const made = new Map<K, V>();
  return (key) => {
    let value = made.get(key);
    if (value === undefined) made.set(key, value = make(key));
    return value;
  };
}
