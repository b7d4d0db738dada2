/**
 * The crypto provider seam: every primitive qsign uses, behind one interface, so the TLS engine,
 * the PKI and the tests do not care whether an algorithm runs in Deno's native WebCrypto or in
 * the portable @noble/* implementation or the system's OpenSSL libcrypto. Select with
 * `QSIGN_CRYPTO=auto|libcrypto|native|noble` (see index.ts).
 *
 * Byte conventions: all inputs and outputs are `Uint8Array`; public keys are in their TLS wire
 * form (ML-KEM encapsulation key, X25519 raw 32 bytes, P-256/P-384 uncompressed points) for key
 * agreement, and SubjectPublicKeyInfo DER for signatures; ECDSA signatures are DER (as TLS and
 * X.509 carry them).
 */

export type HashName = "SHA-256" | "SHA-384" | "SHA-512";
export type AeadName = "AES-128-GCM" | "AES-256-GCM" | "ChaCha20-Poly1305";
export type KemName = "ML-KEM-512" | "ML-KEM-768" | "ML-KEM-1024";
export type EcdhName = "X25519" | "P-256" | "P-384";
export type SignatureAlgorithmName =
  | "ML-DSA-44"
  | "ML-DSA-65"
  | "ML-DSA-87"
  | "ECDSA-P256-SHA256"
  | "ECDSA-P384-SHA384"
  | "Ed25519"
  | "RSA-PSS-SHA256"
  | "RSA-PSS-SHA384"
  | "RSA-PSS-SHA512"
  | "RSA-PKCS1-SHA256"
  | "RSA-PKCS1-SHA384";

/** Raised when an AEAD tag does not verify (maps to the TLS alert bad_record_mac). */
export class AeadAuthError extends Error {
  constructor() {
    super("AEAD authentication failed");
    this.name = "AeadAuthError";
  }
}

/** Raised for a malformed public key, point or ciphertext from a peer (illegal_parameter). */
export class InvalidPublicValueError extends Error {
  constructor(what: string) {
    super(`invalid ${what}`);
    this.name = "InvalidPublicValueError";
  }
}

/** Raised when a PKCS#8 private key (or raw private scalar) cannot be imported. */
export class InvalidPrivateKeyError extends Error {
  constructor(problem: string) {
    super(`invalid private key: ${problem}`);
    this.name = "InvalidPrivateKeyError";
  }
}

/**
 * A hash fed as data arrives. `clone` forks the state, so a handshake transcript is hashed once
 * however many times its hash is read along the way.
 */
export interface IncrementalHash {
  update(data: Uint8Array): IncrementalHash;
  /** An independent copy of the state so far. */
  clone(): IncrementalHash;
  /** The digest of everything fed; the hash is spent afterwards (clone first to go on). */
  digest(): Uint8Array;
}

/**
 * An AEAD bound to one key. Each operation comes twice: async (which may use an asynchronous
 * backend, such as WebCrypto's AES-GCM for bulk records) and `…Sync`, which computes on the spot
 * and is what a record layer should call (no promise hop per record). Both give the same bytes.
 */
export interface Aead {
  readonly tagLength: number;
  /**
   * The plaintext length from which the async operations outrun the `…Sync` ones (Infinity
   * where `…Sync` is the fastest at every size): a record layer calls `…Sync` below it and
   * saves a promise per record, and awaits the async operation from it on.
   */
  readonly asyncFrom: number;
  /** Returns ciphertext || tag. */
  seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  sealSync(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /**
   * Seals the concatenation of `parts` into `out`, which must be exactly their length plus
   * `tagLength` long (ciphertext, then tag): a caller can seal straight into a larger buffer,
   * such as a TLS record after its header, without assembling the plaintext first. Throws
   * RangeError for an `out` of another length. `aad` may be a view of the same buffer, outside
   * `out`.
   */
  sealInto(
    nonce: Uint8Array,
    parts: readonly Uint8Array[],
    aad: Uint8Array,
    out: Uint8Array,
  ): Promise<void>;
  sealIntoSync(
    nonce: Uint8Array,
    parts: readonly Uint8Array[],
    aad: Uint8Array,
    out: Uint8Array,
  ): void;
  /** Throws `AeadAuthError` when the tag does not verify. */
  open(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  openSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array;
  /**
   * Opens `ciphertext` into `out`, which must be exactly `ciphertext.length - tagLength` long
   * and must not overlap `ciphertext`: a record layer can open the records that arrived together
   * into one buffer instead of allocating one per record. Throws RangeError for an `out` of
   * another length, and `AeadAuthError`, with `out` zeroed, when the tag does not verify.
   */
  openIntoSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array, out: Uint8Array): void;
  /**
   * Frees what the key holds outside the JavaScript heap (libcrypto's cipher contexts) at once;
   * call it when the traffic key is dropped. Any later use throws TypeError. Idempotent; for
   * providers with nothing to free it only marks the key spent. (A key never disposed is freed
   * when it is garbage-collected.)
   */
  dispose(): void;
}

/** An ephemeral ML-KEM key pair whose secret stays inside the provider. */
export interface KemKeyPair {
  /** The encapsulation key, as sent on the wire. */
  readonly publicKey: Uint8Array;
  /** Throws `InvalidPublicValueError` for a ciphertext of the wrong length. */
  decapsulate(ciphertext: Uint8Array): Promise<Uint8Array>;
}

export interface Kem {
  readonly name: KemName;
  readonly publicKeyLength: number;
  readonly ciphertextLength: number;
  generateKeyPair(): Promise<KemKeyPair>;
  /** Deterministic key generation from the 64-byte seed d || z (FIPS 203). */
  keyPairFromSeed(seed: Uint8Array): Promise<KemKeyPair>;
  /** Throws `InvalidPublicValueError` for a malformed encapsulation key. */
  encapsulate(publicKey: Uint8Array): Promise<{ ciphertext: Uint8Array; sharedSecret: Uint8Array }>;
}

/** An ephemeral (EC)DH key pair whose secret stays inside the provider. */
export interface KeyAgreementKeyPair {
  readonly publicKey: Uint8Array;
  /** Throws `InvalidPublicValueError` for an invalid point or an all-zero X25519 result. */
  deriveSharedSecret(peerPublicKey: Uint8Array): Promise<Uint8Array>;
}

export interface KeyAgreement {
  readonly name: EcdhName;
  readonly publicKeyLength: number;
  generateKeyPair(): Promise<KeyAgreementKeyPair>;
  /**
   * A key pair from a fixed private key, for known-answer tests and protocol traces: X25519's
   * 32-byte scalar, or the P-256/P-384 scalar big-endian in 32/48 bytes. Throws
   * `InvalidPrivateKeyError` for a wrong length or an out-of-range scalar.
   */
  keyPairFromPrivateKey(privateKey: Uint8Array): Promise<KeyAgreementKeyPair>;
}

/** An imported private key, opaque outside the provider that made it. */
export interface PrivateKey {
  readonly algorithm: SignatureAlgorithmName;
  /** The matching public key, SubjectPublicKeyInfo DER. */
  readonly publicKeySpki: Uint8Array;
}

/**
 * Per-call signature options. `context` is the FIPS 204 context string (at most 255 bytes) and
 * is only defined for ML-DSA; TLS uses the empty context, composite signatures a non-empty one.
 */
export interface SignatureOptions {
  readonly context?: Uint8Array;
}

export interface SignatureAlgorithm {
  readonly name: SignatureAlgorithmName;
  /** Generates a key pair; the public key is SubjectPublicKeyInfo DER. */
  generateKeyPair(): Promise<
    { privateKey: PrivateKey; publicKeySpki: Uint8Array; pkcs8: Uint8Array }
  >;
  /**
   * Imports a PKCS#8 DER private key (ML-DSA in seed or seed-and-expanded form; the seed is
   * what is used). Throws `InvalidPrivateKeyError` for anything else.
   */
  importPrivateKey(pkcs8: Uint8Array): Promise<PrivateKey>;
  /**
   * Signs `message` (hashing it as the algorithm requires; ML-DSA signs hedged, ECDSA returns
   * DER). Throws `RangeError` for a context on a non-ML-DSA algorithm or one over 255 bytes.
   */
  sign(
    privateKey: PrivateKey,
    message: Uint8Array,
    options?: SignatureOptions,
  ): Promise<Uint8Array>;
  /**
   * False for a bad or malformed signature (and, as FIPS 204 says, for a context over 255
   * bytes); throws `InvalidPublicValueError` for an unusable key.
   */
  verify(
    publicKeySpki: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    options?: SignatureOptions,
  ): Promise<boolean>;
}

export type ProviderName = "native" | "noble" | "libcrypto";

/** The primitive families a provider reports on (what serves each: see `primitives`). */
export const PRIMITIVE_FAMILIES = [
  "random",
  "SHA-2",
  "HMAC/HKDF",
  "AES-GCM",
  "ChaCha20-Poly1305",
  "X25519",
  "ECDH P-256",
  "ECDH P-384",
  "ECDSA",
  "Ed25519",
  "RSA",
  "ML-KEM",
  "ML-DSA",
] as const;
export type PrimitiveFamily = (typeof PRIMITIVE_FAMILIES)[number];

/**
 * What computes a primitive family: libcrypto (OpenSSL over FFI), nettle (GNU Nettle over FFI,
 * P-384 agreement beside an OpenSSL before 3.2), webcrypto or node:crypto (Deno's Rust
 * implementations), or noble (@noble/*, JavaScript).
 */
export type PrimitiveBackend = "libcrypto" | "nettle" | "webcrypto" | "node:crypto" | "noble";

/** Every primitive qsign uses. */
export interface CryptoProvider {
  readonly name: ProviderName;
  /** What computes each primitive family in this provider. */
  readonly primitives: Readonly<Record<PrimitiveFamily, PrimitiveBackend>>;
  /** The library behind it, where there is one to name (e.g. "OpenSSL 3.0.19 27 Jan 2026"). */
  readonly library?: string;
  randomBytes(length: number): Uint8Array;
  hash(alg: HashName, data: Uint8Array): Promise<Uint8Array>;
  hashSync(alg: HashName, data: Uint8Array): Uint8Array;
  createHash(alg: HashName): IncrementalHash;
  hmac(alg: HashName, key: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  hmacSync(alg: HashName, key: Uint8Array, data: Uint8Array): Uint8Array;
  hkdfExtract(alg: HashName, salt: Uint8Array, ikm: Uint8Array): Promise<Uint8Array>;
  hkdfExtractSync(alg: HashName, salt: Uint8Array, ikm: Uint8Array): Uint8Array;
  hkdfExpand(alg: HashName, prk: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  hkdfExpandSync(alg: HashName, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  aead(alg: AeadName, key: Uint8Array): Promise<Aead>;
  /** The key schedule done now; the AEAD's async and sync operations give the same bytes. */
  aeadSync(alg: AeadName, key: Uint8Array): Aead;
  kem(alg: KemName): Kem;
  keyAgreement(alg: EcdhName): KeyAgreement;
  signature(alg: SignatureAlgorithmName): SignatureAlgorithm;
}
