/**
 * The native provider: Deno's WebCrypto for every primitive it has (all of qsign's). The one
 * fallback to @noble/post-quantum is ML-DSA with a non-empty context string, which Deno 2.9
 * refuses; TLS always uses the empty context, composite signatures do not.
 *
 * HKDF-Extract and -Expand are built on HMAC: WebCrypto's HKDF only runs both steps together,
 * and TLS 1.3's key schedule needs them separately.
 */
import { checkRawPublicKey, encodePkcs8, PRIVATE_KEY_LENGTHS, PUBLIC_KEY_LENGTHS } from "./keys.ts";
import { nobleProvider } from "./noble.ts";
import {
  AEAD_TAG_LENGTH,
  checkAeadKey,
  checkExpandLength,
  checkKemSeed,
  checkNonce,
  checkPeerLength,
  ECDH_SECRET_LENGTHS,
  HASH_LENGTHS,
  KEM_SIZES,
  memoize,
  randomBytes,
  rejectAllZero,
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
  type SignatureAlgorithm,
  type SignatureAlgorithmName,
} from "./provider.ts";
import { source, subtle, usages, WebCryptoSignature } from "./webcrypto.ts";

/** WebCrypto refuses zero-length HMAC keys; HMAC pads keys with zeros, so this one is equal. */
function hmacKey(alg: HashName, key: Uint8Array): Promise<CryptoKey> {
  const material = key.length ? key : new Uint8Array(HASH_LENGTHS[alg]);
  return subtle.importKey("raw", source(material), { name: "HMAC", hash: alg }, false, ["sign"]);
}

async function hmac(alg: HashName, key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle.sign("HMAC", await hmacKey(alg, key), source(data)));
}

/** RFC 5869 §2.3 over one imported PRK: T(i) = HMAC(PRK, T(i-1) || info || i). */
async function hkdfExpand(
  alg: HashName,
  prk: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  checkExpandLength(alg, length);
  const key = await hmacKey(alg, prk);
  const hashLength = HASH_LENGTHS[alg];
  const okm = new Uint8Array(length);
  const block = new Uint8Array(hashLength + info.length + 1);
  block.set(info, hashLength);
  for (let i = 1, offset = 0; offset < length; i++, offset += hashLength) {
    // T(1) has no predecessor: feed info || 1 only, from just past the T slot.
    block[block.length - 1] = i;
    const input = i === 1 ? block.subarray(hashLength) : block;
    const t = new Uint8Array(await subtle.sign("HMAC", key, input));
    okm.set(t.subarray(0, Math.min(hashLength, length - offset)), offset);
    block.set(t, 0);
  }
  return okm;
}

/** An AEAD over one imported, non-extractable key, reused for every record. */
class WebCryptoAead implements Aead {
  readonly tagLength = AEAD_TAG_LENGTH;
  readonly #name: string;
  readonly #key: CryptoKey;

  constructor(name: string, key: CryptoKey) {
    this.#name = name;
    this.#key = key;
  }

  async seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkNonce(nonce);
    const params = { name: this.#name, iv: source(nonce), additionalData: source(aad) };
    return new Uint8Array(await subtle.encrypt(params, this.#key, source(plaintext)));
  }

  async open(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    checkNonce(nonce);
    const params = { name: this.#name, iv: source(nonce), additionalData: source(aad) };
    try {
      return new Uint8Array(await subtle.decrypt(params, this.#key, source(ciphertext)));
    } catch {
      throw new AeadAuthError();
    }
  }
}

async function aead(alg: AeadName, key: Uint8Array): Promise<Aead> {
  checkAeadKey(alg, key);
  const name = alg === "ChaCha20-Poly1305" ? alg : "AES-GCM";
  // Deno imports ChaCha20-Poly1305 keys only in the draft's "raw-secret" format.
  const format = alg === "ChaCha20-Poly1305" ? "raw-secret" : "raw";
  const cryptoKey = await subtle.importKey(format, source(key), { name }, false, [
    "encrypt",
    "decrypt",
  ]);
  return new WebCryptoAead(name, cryptoKey);
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

function keyAgreement(name: EcdhName): KeyAgreement {
  const algorithm = name === "X25519" ? { name } : { name: "ECDH", namedCurve: name };
  const secretBits = ECDH_SECRET_LENGTHS[name] * 8;

  async function keyPair(
    privateKey: CryptoKey,
    publicKey: CryptoKey,
  ): Promise<KeyAgreementKeyPair> {
    return {
      publicKey: new Uint8Array(await subtle.exportKey("raw", publicKey)),
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

  return {
    name,
    publicKeyLength: PUBLIC_KEY_LENGTHS[name],
    async generateKeyPair() {
      const pair = await subtle.generateKey(algorithm, false, ["deriveBits"]) as CryptoKeyPair;
      return keyPair(pair.privateKey, pair.publicKey);
    },
    async keyPairFromPrivateKey(privateKey) {
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
      return keyPair(key, publicKey);
    },
  };
}

/** Deno's WebCrypto, with the noble fallback described above. */
export const nativeProvider: CryptoProvider = {
  name: "native",
  randomBytes,
  async hash(alg, data) {
    return new Uint8Array(await subtle.digest(alg, source(data)));
  },
  hmac,
  hkdfExtract: (alg, salt, ikm) => hmac(alg, salt, ikm),
  hkdfExpand,
  aead,
  kem: memoize(kem),
  keyAgreement: memoize(keyAgreement),
  signature: memoize((name: SignatureAlgorithmName): SignatureAlgorithm =>
    new WebCryptoSignature(
      name,
      name.startsWith("ML-DSA") ? nobleProvider.signature(name) : undefined,
    )
  ),
};
