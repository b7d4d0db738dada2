/**
 * The native provider: Deno's own (Rust) implementations, wherever Deno has the algorithm and
 * calling it pays. Measured in Deno 2.9.6 on 2 cores (tests/bench/crypto_bench.ts and
 * server_profile.ts; CPU time per call):
 *
 * - WebCrypto for ML-KEM, ML-DSA, ECDSA, Ed25519, RSA, the (EC)DH arithmetic and bulk AES-GCM.
 * - Hashes and AEADs through Deno's `node:crypto`, native as well but synchronous: a WebCrypto
 *   call carries ≈15–35 µs of algorithm normalization and promise round trip, more than sealing
 *   a small TLS record (a handshake message, a short reply) takes here (≈10 µs). WebCrypto's
 *   AES-GCM is still used for bulk records, where it is the faster (see NativeAead).
 *   node:crypto also hashes incrementally (WebCrypto only one-shot), which a TLS transcript
 *   needs.
 * - HMAC and HKDF from @noble/hashes, as in the noble provider. TLS 1.3's key schedule makes
 *   ~25 HMACs of a few dozen bytes per handshake; WebCrypto needs an importKey and a sign per
 *   HMAC (≈100 µs together), the JavaScript HMAC ≈15 µs, node:crypto's ≈30 µs. (WebCrypto's
 *   HKDF would not do anyway: it runs Extract and Expand together, the key schedule needs them
 *   apart.)
 * - P-256/P-384 ephemeral key pairs from a random scalar (@noble/curves' `randomSecretKey`,
 *   uniform below the group order) imported into WebCrypto, rather than WebCrypto's
 *   generateKey: Deno's P-384 agreement with an imported key takes half the time (≈0.6 ms
 *   against 1.1 ms), and so does exporting its public point (≈0.65 ms against 1.2 ms), which
 *   halves P-384's cost per handshake. (Computing the point with noble, ≈0.4 ms, would save
 *   another 0.25 ms, but its first use in a process builds tables and compiles for ≈50 ms: a
 *   one-shot client such as `qsign connect` would lose more than any server gains.)
 *
 * The one fallback to @noble/post-quantum is ML-DSA with a non-empty context string, which Deno
 * 2.9 refuses; TLS always uses the empty context, composite signatures do not.
 */
import {
  type CipherGCMTypes,
  createCipheriv,
  createDecipheriv,
  createHash as nodeCreateHash,
  createSecretKey,
  type Hash as NodeHash,
  type KeyObject,
} from "node:crypto";
import { p256, p384 } from "@noble/curves/nist.js";
import { checkRawPublicKey, encodePkcs8, PRIVATE_KEY_LENGTHS, PUBLIC_KEY_LENGTHS } from "./keys.ts";
import { nobleProvider } from "./noble.ts";
import {
  AEAD_TAG_LENGTH,
  checkAeadKey,
  checkKemSeed,
  checkNonce,
  checkPeerLength,
  ECDH_SECRET_LENGTHS,
  KEM_SIZES,
  memoize,
  openIntoByCopy,
  randomBytes,
  rejectAllZero,
  sealedLength,
} from "./params.ts";
import {
  type Aead,
  AeadAuthError,
  type AeadName,
  type CryptoProvider,
  type EcdhName,
  type HashName,
  type IncrementalHash,
  InvalidPrivateKeyError,
  InvalidPublicValueError,
  type Kem,
  type KemKeyPair,
  type KemName,
  type KeyAgreement,
  type KeyAgreementKeyPair,
  type SignatureAlgorithm,
  type SignatureAlgorithmName,
} from "./provider.ts";
import { source, subtle, usages, WebCryptoSignature } from "./webcrypto.ts";

const NODE_HASH_NAMES: Record<HashName, string> = {
  "SHA-256": "sha256",
  "SHA-384": "sha384",
  "SHA-512": "sha512",
};

/** node:crypto's output (a Buffer) as a plain Uint8Array view, without a copy. */
const bytesOf = (buffer: Uint8Array) =>
  new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);

/** node:crypto's hash as an IncrementalHash, with digests as plain Uint8Arrays (not Buffers). */
class NativeHash implements IncrementalHash {
  readonly #hash: NodeHash;

  constructor(hash: NodeHash) {
    this.#hash = hash;
  }

  update(data: Uint8Array): IncrementalHash {
    this.#hash.update(data);
    return this;
  }

  clone(): IncrementalHash {
    return new NativeHash(this.#hash.copy());
  }

  digest(): Uint8Array {
    return bytesOf(this.#hash.digest());
  }
}

function createHash(alg: HashName): IncrementalHash {
  return new NativeHash(nodeCreateHash(NODE_HASH_NAMES[alg]));
}

function hashSync(alg: HashName, data: Uint8Array): Uint8Array {
  return createHash(alg).update(data).digest();
}

/**
 * node:crypto's name of each AEAD. ChaCha20-Poly1305 takes the GCM modes' options and has their
 * methods, but the typings give it an overload of its own: hence its one cast.
 */
const NODE_CIPHER_NAMES: Record<AeadName, CipherGCMTypes> = {
  "AES-128-GCM": "aes-128-gcm",
  "AES-256-GCM": "aes-256-gcm",
  "ChaCha20-Poly1305": "chacha20-poly1305" as CipherGCMTypes,
};

/**
 * From this many plaintext bytes on, AES-GCM goes through WebCrypto: its AES is faster on bulk
 * data (a 16 KB record ≈75 µs against node:crypto's ≈100 µs), while its per-call overhead makes
 * it the slower one below ≈3 KB. ChaCha20-Poly1305 is faster in node:crypto at every size.
 */
const WEBCRYPTO_AES_MIN_BYTES = 4096;

/**
 * An AEAD over one key, reused for every record: held by node:crypto (a KeyObject) and, for
 * AES-GCM made by `aead()`, also by WebCrypto (non-extractable), each used for the sizes it is
 * faster at. The `…Sync` operations (and every operation of a key from `aeadSync()`) use
 * node:crypto alone.
 */
class NativeAead implements Aead {
  readonly tagLength = AEAD_TAG_LENGTH;
  readonly asyncFrom: number;
  readonly #cipher: CipherGCMTypes;
  #key?: KeyObject;
  readonly #bulkKey?: CryptoKey;

  constructor(alg: AeadName, key: KeyObject, bulkKey: CryptoKey | undefined) {
    this.#cipher = NODE_CIPHER_NAMES[alg];
    this.#key = key;
    this.#bulkKey = bulkKey;
    this.asyncFrom = bulkKey ? WEBCRYPTO_AES_MIN_BYTES : Infinity;
  }

  async seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const out = new Uint8Array(plaintext.length + AEAD_TAG_LENGTH);
    await this.sealInto(nonce, [plaintext], aad, out);
    return out;
  }

  sealSync(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    const out = new Uint8Array(plaintext.length + AEAD_TAG_LENGTH);
    this.sealIntoSync(nonce, [plaintext], aad, out);
    return out;
  }

  async sealInto(
    nonce: Uint8Array,
    parts: readonly Uint8Array[],
    aad: Uint8Array,
    out: Uint8Array,
  ): Promise<void> {
    checkNonce(nonce);
    const length = sealedLength(parts, out);
    if (this.#bulkKey && length >= this.asyncFrom) {
      this.#keyObject();
      const params = { name: "AES-GCM", iv: source(nonce), additionalData: source(aad) };
      const plaintext = parts.length === 1 ? parts[0] : concat(parts, length);
      out.set(new Uint8Array(await subtle.encrypt(params, this.#bulkKey, source(plaintext))));
      return;
    }
    this.sealIntoSync(nonce, parts, aad, out);
  }

  sealIntoSync(
    nonce: Uint8Array,
    parts: readonly Uint8Array[],
    aad: Uint8Array,
    out: Uint8Array,
  ): void {
    checkNonce(nonce);
    sealedLength(parts, out);
    const cipher = createCipheriv(this.#cipher, this.#keyObject(), nonce, {
      authTagLength: AEAD_TAG_LENGTH,
    });
    cipher.setAAD(aad);
    let at = 0;
    for (const piece of [...parts.map((part) => cipher.update(part)), cipher.final()]) {
      out.set(piece, at);
      at += piece.length;
    }
    out.set(cipher.getAuthTag(), at);
  }

  async open(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkNonce(nonce);
    const length = ciphertext.length - AEAD_TAG_LENGTH;
    if (this.#bulkKey && length >= this.asyncFrom) {
      this.#keyObject();
      const params = { name: "AES-GCM", iv: source(nonce), additionalData: source(aad) };
      try {
        return new Uint8Array(await subtle.decrypt(params, this.#bulkKey, source(ciphertext)));
      } catch {
        throw new AeadAuthError();
      }
    }
    return this.openSync(nonce, ciphertext, aad);
  }

  openSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array {
    checkNonce(nonce);
    const length = ciphertext.length - AEAD_TAG_LENGTH;
    if (length < 0) throw new AeadAuthError();
    const decipher = createDecipheriv(this.#cipher, this.#keyObject(), nonce, {
      authTagLength: AEAD_TAG_LENGTH,
    });
    decipher.setAAD(aad);
    decipher.setAuthTag(ciphertext.subarray(length));
    const plaintext = decipher.update(ciphertext.subarray(0, length));
    try {
      // Checks the tag: nothing decrypted is returned before it passes.
      decipher.final();
    } catch {
      throw new AeadAuthError();
    }
    return bytesOf(plaintext);
  }

  openIntoSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array, out: Uint8Array): void {
    openIntoByCopy(this, nonce, ciphertext, aad, out);
  }

  dispose(): void {
    this.#key = undefined;
  }

  #keyObject(): KeyObject {
    if (!this.#key) throw new TypeError("AEAD key used after dispose()");
    return this.#key;
  }
}

/** `parts` joined, `length` bytes in all. */
function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const joined = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

async function aead(alg: AeadName, key: Uint8Array): Promise<Aead> {
  checkAeadKey(alg, key);
  const bulkKey = alg === "ChaCha20-Poly1305"
    ? undefined
    : await subtle.importKey("raw", source(key), { name: "AES-GCM" }, false, [
      "encrypt",
      "decrypt",
    ]);
  return new NativeAead(alg, createSecretKey(key), bulkKey);
}

function aeadSync(alg: AeadName, key: Uint8Array): Aead {
  checkAeadKey(alg, key);
  return new NativeAead(alg, createSecretKey(key), undefined);
}

function kem(name: KemName): Kem {
  const { publicKey: publicKeyLength, ciphertext: ciphertextLength } = KEM_SIZES[name];
  const algorithm = { name };

  async function keyPair(privateKey: CryptoKey, publicKey: CryptoKey): Promise<KemKeyPair> {
    return {
      publicKey: new Uint8Array(await subtle.exportKey("raw-public", publicKey)),
      async decapsulate(ciphertext) {
        checkPeerLength(`${name} ciphertext`, ciphertext, ciphertextLength);
        return new Uint8Array(
          await subtle.decapsulateBits(algorithm, privateKey, source(ciphertext)),
        );
      },
    };
  }

  return {
    name,
    publicKeyLength,
    ciphertextLength,
    async generateKeyPair() {
      const pair = await subtle.generateKey(
        algorithm,
        false,
        usages("encapsulateBits", "decapsulateBits"),
      ) as CryptoKeyPair;
      return keyPair(pair.privateKey, pair.publicKey);
    },
    async keyPairFromSeed(seed) {
      checkKemSeed(seed);
      const privateKey = await subtle.importKey(
        "raw-seed",
        source(seed),
        algorithm,
        false,
        usages("decapsulateBits"),
      );
      return keyPair(privateKey, await subtle.getPublicKey(privateKey, usages("encapsulateBits")));
    },
    async encapsulate(publicKey) {
      checkPeerLength(`${name} encapsulation key`, publicKey, publicKeyLength);
      let encapsulated: { ciphertext: ArrayBuffer; sharedKey: ArrayBuffer };
      try {
        const key = await subtle.importKey(
          "raw-public",
          source(publicKey),
          algorithm,
          false,
          usages("encapsulateBits"),
        );
        // Deno runs the FIPS 203 §7.2 modulus check here, not on import.
        encapsulated = await subtle.encapsulateBits(algorithm, key);
      } catch {
        throw new InvalidPublicValueError(`${name} encapsulation key`);
      }
      const { ciphertext, sharedKey } = encapsulated;
      return { ciphertext: new Uint8Array(ciphertext), sharedSecret: new Uint8Array(sharedKey) };
    },
  };
}

const NIST_CURVES = { "P-256": p256, "P-384": p384 };

function keyAgreement(name: EcdhName): KeyAgreement {
  const algorithm = name === "X25519" ? { name } : { name: "ECDH", namedCurve: name };
  const secretBits = ECDH_SECRET_LENGTHS[name] * 8;

  function keyPair(privateKey: CryptoKey, publicKey: Uint8Array): KeyAgreementKeyPair {
    return {
      publicKey,
      async deriveSharedSecret(peerPublicKey) {
        checkRawPublicKey(name, peerPublicKey);
        let secret: Uint8Array;
        try {
          const peer = await subtle.importKey("raw", source(peerPublicKey), algorithm, false, []);
          secret = new Uint8Array(
            await subtle.deriveBits({ name: algorithm.name, public: peer }, privateKey, secretBits),
          );
        } catch {
          // WebCrypto validates NIST points only here (a TypeError), and refuses X25519's
          // all-zero result itself (an OperationError).
          throw new InvalidPublicValueError(`${name} public key`);
        }
        return name === "X25519" ? rejectAllZero(secret) : secret;
      },
    };
  }

  async function keyPairFromPrivateKey(privateKey: Uint8Array): Promise<KeyAgreementKeyPair> {
    if (privateKey.length !== PRIVATE_KEY_LENGTHS[name]) {
      throw new InvalidPrivateKeyError(`${name} private key of ${privateKey.length} bytes`);
    }
    let key: CryptoKey;
    let publicKey: CryptoKey;
    try {
      key = await subtle.importKey(
        "pkcs8",
        source(encodePkcs8(name, privateKey)),
        algorithm,
        false,
        ["deriveBits"],
      );
      // Deno imports an out-of-range scalar and only fails here.
      publicKey = await subtle.getPublicKey(key, []);
    } catch (error) {
      throw new InvalidPrivateKeyError(`${name}: ${(error as Error).message}`);
    }
    return keyPair(key, new Uint8Array(await subtle.exportKey("raw", publicKey)));
  }

  return {
    name,
    publicKeyLength: PUBLIC_KEY_LENGTHS[name],
    async generateKeyPair() {
      // NIST curves: a scalar of our own, imported (see the top of this file).
      if (name !== "X25519") {
        return keyPairFromPrivateKey(NIST_CURVES[name].utils.randomSecretKey());
      }
      const pair = await subtle.generateKey(algorithm, false, ["deriveBits"]) as CryptoKeyPair;
      return keyPair(
        pair.privateKey,
        new Uint8Array(await subtle.exportKey("raw", pair.publicKey)),
      );
    },
    keyPairFromPrivateKey,
  };
}

/** Deno's native crypto, arranged as described above. */
export const nativeProvider: CryptoProvider = {
  name: "native",
  primitives: {
    "random": "webcrypto",
    "SHA-2": "node:crypto",
    "HMAC/HKDF": "noble",
    "AES-GCM": "node:crypto",
    "ChaCha20-Poly1305": "node:crypto",
    "X25519": "webcrypto",
    "ECDH P-256": "webcrypto",
    "ECDH P-384": "webcrypto",
    "ECDSA": "webcrypto",
    "Ed25519": "webcrypto",
    "RSA": "webcrypto",
    "ML-KEM": "webcrypto",
    "ML-DSA": "webcrypto",
  },
  randomBytes,
  // `async` turns a throw into a rejection, as callers of an async API expect.
  // deno-lint-ignore require-await
  async hash(alg, data) {
    return hashSync(alg, data);
  },
  hashSync,
  createHash,
  hmac: nobleProvider.hmac,
  hmacSync: nobleProvider.hmacSync,
  hkdfExtract: nobleProvider.hkdfExtract,
  hkdfExtractSync: nobleProvider.hkdfExtractSync,
  hkdfExpand: nobleProvider.hkdfExpand,
  hkdfExpandSync: nobleProvider.hkdfExpandSync,
  aead,
  aeadSync,
  kem: memoize(kem),
  keyAgreement: memoize(keyAgreement),
  signature: memoize((name: SignatureAlgorithmName): SignatureAlgorithm =>
    new WebCryptoSignature(
      name,
      name.startsWith("ML-DSA") ? nobleProvider.signature(name) : undefined,
    )
  ),
};
