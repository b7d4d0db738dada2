/**
 * The portable provider: @noble/post-quantum, @noble/curves, @noble/ciphers and @noble/hashes,
 * pure JavaScript, also the cross-check of the native provider. noble has no RSA, so RSA-PSS and
 * RSA-PKCS1 use WebCrypto here too (the same code as the native provider).
 */
// noble computes synchronously behind the provider's async interface; `async` without `await`
// is deliberate: it turns every throw into a rejection, as callers of an async API expect.
// deno-lint-ignore-file require-await
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { gcm } from "@noble/ciphers/aes.js";
import { concatBytes } from "@noble/ciphers/utils.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { p256, p384 } from "@noble/curves/nist.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { ml_dsa44, ml_dsa65, ml_dsa87 } from "@noble/post-quantum/ml-dsa.js";
import { ml_kem1024, ml_kem512, ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { ecdsaDerToRaw } from "./der.ts";
import {
  checkRawPublicKey,
  decodePkcs8,
  decodeSpki,
  encodePkcs8,
  encodeSpki,
  PRIVATE_KEY_LENGTHS,
  PUBLIC_KEY_LENGTHS,
} from "./keys.ts";
import {
  checkAeadKey,
  checkExpandLength,
  checkKemSeed,
  checkNonce,
  checkPeerLength,
  contextTooLong,
  KEM_SIZES,
  memoize,
  randomBytes,
  rejectAllZero,
  sealedLength,
  type SignatureParams,
  SIGNATURES,
  signingContext,
  SyncAead,
} from "./params.ts";
import {
  type Aead,
  AeadAuthError,
  type AeadName,
  type CryptoProvider,
  type EcdhName,
  type HashName,
  InvalidPrivateKeyError,
  InvalidPublicValueError,
  type Kem,
  type KemKeyPair,
  type KemName,
  type KeyAgreement,
  type KeyAgreementKeyPair,
  type PrivateKey,
  type SignatureAlgorithm,
  type SignatureAlgorithmName,
  type SignatureOptions,
} from "./provider.ts";
import { PrivateKeys } from "./private_keys.ts";
import { WebCryptoSignature } from "./webcrypto.ts";

const HASHES = { "SHA-256": sha256, "SHA-384": sha384, "SHA-512": sha512 } as const;
const KEMS = { "ML-KEM-512": ml_kem512, "ML-KEM-768": ml_kem768, "ML-KEM-1024": ml_kem1024 };
const ML_DSA = { "ML-DSA-44": ml_dsa44, "ML-DSA-65": ml_dsa65, "ML-DSA-87": ml_dsa87 };
const NIST_CURVES = { "P-256": p256, "P-384": p384 };

/** An AEAD bound to one key; noble ciphers take key and nonce together, so each call builds one. */
class NobleAead extends SyncAead {
  readonly #cipher: typeof gcm | typeof chacha20poly1305;
  #key?: Uint8Array;

  constructor(alg: AeadName, key: Uint8Array) {
    super();
    this.#cipher = alg === "ChaCha20-Poly1305" ? chacha20poly1305 : gcm;
    this.#key = key.slice();
  }

  // Noble encrypts a single buffer into a new one: no need to go through sealIntoSync.
  override sealSync(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    checkNonce(nonce);
    return this.#cipher(this.#secret(), nonce, aad).encrypt(plaintext);
  }

  sealIntoSync(
    nonce: Uint8Array,
    parts: readonly Uint8Array[],
    aad: Uint8Array,
    out: Uint8Array,
  ): void {
    checkNonce(nonce);
    sealedLength(parts, out);
    out.set(this.#cipher(this.#secret(), nonce, aad).encrypt(concatBytes(...parts)));
  }

  openSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array {
    checkNonce(nonce);
    const cipher = this.#cipher(this.#secret(), nonce, aad);
    try {
      return cipher.decrypt(ciphertext);
    } catch {
      throw new AeadAuthError();
    }
  }

  dispose(): void {
    this.#key?.fill(0);
    this.#key = undefined;
  }

  #secret(): Uint8Array {
    if (!this.#key) throw new TypeError("AEAD key used after dispose()");
    return this.#key;
  }
}

function kem(name: KemName): Kem {
  const mlKem = KEMS[name];
  const { publicKey: publicKeyLength, ciphertext: ciphertextLength } = KEM_SIZES[name];

  function keyPair(seed?: Uint8Array): KemKeyPair {
    const { publicKey, secretKey } = mlKem.keygen(seed);
    return {
      publicKey,
      async decapsulate(ciphertext) {
        checkPeerLength(`${name} ciphertext`, ciphertext, ciphertextLength);
        return mlKem.decapsulate(ciphertext, secretKey);
      },
    };
  }

  return {
    name,
    publicKeyLength,
    ciphertextLength,
    generateKeyPair: async () => keyPair(),
    async keyPairFromSeed(seed) {
      checkKemSeed(seed);
      return keyPair(seed);
    },
    async encapsulate(publicKey) {
      checkPeerLength(`${name} encapsulation key`, publicKey, publicKeyLength);
      let result;
      try {
        // noble runs the FIPS 203 §7.2 modulus check here.
        result = mlKem.encapsulate(publicKey);
      } catch {
        throw new InvalidPublicValueError(`${name} encapsulation key`);
      }
      return { ciphertext: result.cipherText, sharedSecret: result.sharedSecret };
    },
  };
}

function keyAgreement(name: EcdhName): KeyAgreement {
  const curve = name === "X25519" ? undefined : NIST_CURVES[name];

  function keyPair(privateKey: Uint8Array): KeyAgreementKeyPair {
    return {
      publicKey: curve ? curve.getPublicKey(privateKey, false) : x25519.getPublicKey(privateKey),
      async deriveSharedSecret(peerPublicKey) {
        checkRawPublicKey(name, peerPublicKey);
        let secret: Uint8Array;
        try {
          // NIST curves: the shared point compressed, minus its prefix byte, is the x-coordinate.
          secret = curve
            ? curve.getSharedSecret(privateKey, peerPublicKey, true).subarray(1)
            : x25519.getSharedSecret(privateKey, peerPublicKey);
        } catch {
          // Off-curve points, and the X25519 low-order points noble refuses up front.
          throw new InvalidPublicValueError(`${name} public key`);
        }
        return curve ? secret : rejectAllZero(secret);
      },
    };
  }

  return {
    name,
    publicKeyLength: PUBLIC_KEY_LENGTHS[name],
    generateKeyPair: async () => keyPair((curve ?? x25519).utils.randomSecretKey()),
    async keyPairFromPrivateKey(privateKey) {
      if (privateKey.length !== PRIVATE_KEY_LENGTHS[name]) {
        throw new InvalidPrivateKeyError(`${name} private key of ${privateKey.length} bytes`);
      }
      if (curve && !curve.utils.isValidSecretKey(privateKey)) {
        throw new InvalidPrivateKeyError(`${name} scalar out of range`);
      }
      return keyPair(privateKey.slice());
    },
  };
}

/** The secret key bytes behind each private key this provider made. */
const secretKeys = new PrivateKeys<Uint8Array>("noble");

type NobleParams = Exclude<SignatureParams, { family: "RSA-PSS" | "RSA-PKCS1" }>;

/** ML-DSA, ECDSA and Ed25519 over noble. */
class NobleSignature implements SignatureAlgorithm {
  readonly #params: NobleParams;

  constructor(readonly name: SignatureAlgorithmName, params: NobleParams) {
    this.#params = params;
  }

  async generateKeyPair() {
    const params = this.#params;
    const privateBytes = params.family === "ECDSA"
      ? NIST_CURVES[params.keyType].utils.randomSecretKey()
      : randomBytes(PRIVATE_KEY_LENGTHS[params.keyType]);
    const pkcs8 = encodePkcs8(params.keyType, privateBytes);
    const privateKey = await this.importPrivateKey(pkcs8);
    return { privateKey, publicKeySpki: privateKey.publicKeySpki, pkcs8 };
  }

  async importPrivateKey(pkcs8: Uint8Array): Promise<PrivateKey> {
    const params = this.#params;
    const raw = decodePkcs8(params.keyType, pkcs8);
    let secret: Uint8Array;
    let publicKey: Uint8Array;
    if (params.family === "ML-DSA") {
      ({ secretKey: secret, publicKey } = ML_DSA[params.keyType].keygen(raw));
    } else if (params.family === "ECDSA") {
      const curve = NIST_CURVES[params.keyType];
      if (!curve.utils.isValidSecretKey(raw)) {
        throw new InvalidPrivateKeyError(`${params.keyType} scalar out of range`);
      }
      secret = raw.slice();
      publicKey = curve.getPublicKey(secret, false);
    } else {
      secret = raw.slice();
      publicKey = ed25519.getPublicKey(secret);
    }
    return secretKeys.add(this.name, encodeSpki(params.keyType, publicKey), secret);
  }

  async sign(
    privateKey: PrivateKey,
    message: Uint8Array,
    options?: SignatureOptions,
  ): Promise<Uint8Array> {
    const secret = secretKeys.materialOf(privateKey, this.name);
    const params = this.#params;
    const context = signingContext(params, options);
    switch (params.family) {
      case "ML-DSA":
        return ML_DSA[params.keyType].sign(message, secret, { context });
      case "ECDSA":
        return NIST_CURVES[params.keyType].sign(message, secret, {
          prehash: true,
          format: "der",
        });
      case "Ed25519":
        return ed25519.sign(message, secret);
    }
  }

  async verify(
    publicKeySpki: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    options?: SignatureOptions,
  ): Promise<boolean> {
    const params = this.#params;
    const publicKey = decodeSpki(params.keyType, publicKeySpki);
    if (params.family === "ML-DSA" && contextTooLong(options)) return false;
    return this.#verifyRaw(publicKey, message, signature, signingContext(params, options));
  }

  #verifyRaw(
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    context: Uint8Array | undefined,
  ): boolean {
    const params = this.#params;
    if (params.family === "ECDSA") {
      const curve = NIST_CURVES[params.keyType];
      try {
        curve.Point.fromBytes(publicKey);
      } catch {
        throw new InvalidPublicValueError(`${this.name} public key`);
      }
      let raw: Uint8Array;
      try {
        raw = ecdsaDerToRaw(signature, PRIVATE_KEY_LENGTHS[params.keyType]);
      } catch {
        return false;
      }
      // X.509 and TLS accept either s; noble's default low-S rule is Bitcoin's.
      return curve.verify(raw, message, publicKey, { prehash: true, lowS: false });
    }
    try {
      return params.family === "ML-DSA"
        ? ML_DSA[params.keyType].verify(signature, message, publicKey, { context })
        : ed25519.verify(signature, message, publicKey, { zip215: false });
    } catch {
      // Malformed signature encodings.
      return false;
    }
  }
}

function signature(name: SignatureAlgorithmName): SignatureAlgorithm {
  const params = SIGNATURES[name];
  return "keyType" in params ? new NobleSignature(name, params) : new WebCryptoSignature(name);
}

function hkdfExpandSync(alg: HashName, prk: Uint8Array, info: Uint8Array, length: number) {
  checkExpandLength(alg, length);
  return expand(HASHES[alg], prk, info, length);
}

function aeadSync(alg: AeadName, key: Uint8Array): Aead {
  checkAeadKey(alg, key);
  return new NobleAead(alg, key);
}

/** The @noble/* implementation (RSA through WebCrypto, as noted above). */
export const nobleProvider: CryptoProvider = {
  name: "noble",
  primitives: {
    "random": "webcrypto",
    "SHA-2": "noble",
    "HMAC/HKDF": "noble",
    "AES-GCM": "noble",
    "ChaCha20-Poly1305": "noble",
    "X25519": "noble",
    "ECDH P-256": "noble",
    "ECDH P-384": "noble",
    "ECDSA": "noble",
    "Ed25519": "noble",
    "RSA": "webcrypto",
    "ML-KEM": "noble",
    "ML-DSA": "noble",
  },
  randomBytes,
  hash: async (alg, data) => HASHES[alg](data),
  hashSync: (alg, data) => HASHES[alg](data),
  createHash: (alg) => HASHES[alg].create(),
  hmac: async (alg, key, data) => hmac(HASHES[alg], key, data),
  hmacSync: (alg, key, data) => hmac(HASHES[alg], key, data),
  hkdfExtract: async (alg, salt, ikm) => extract(HASHES[alg], ikm, salt),
  hkdfExtractSync: (alg, salt, ikm) => extract(HASHES[alg], ikm, salt),
  hkdfExpand: async (alg, prk, info, length) => hkdfExpandSync(alg, prk, info, length),
  hkdfExpandSync,
  aead: async (alg, key) => aeadSync(alg, key),
  aeadSync,
  kem: memoize(kem),
  keyAgreement: memoize(keyAgreement),
  signature: memoize(signature),
};
