/**
 * Deno's WebCrypto as the providers use it: the typed entry points the lib types do not have
 * yet (ML-KEM encapsulation, `getPublicKey`), and the signature algorithms over WebCrypto keys,
 * shared by the native provider (all of them) and the noble one (RSA, which noble lacks).
 */
import { ecdsaDerToRaw, ecdsaRawToDer } from "./der.ts";
import {
  decodePkcs8,
  decodeSpki,
  encodePkcs8,
  encodeSpki,
  PRIVATE_KEY_LENGTHS,
  type RawKeyType,
} from "./keys.ts";
import {
  contextTooLong,
  HASH_LENGTHS,
  RSA_MODULUS_BITS,
  type SignatureParams,
  SIGNATURES,
  signingContext,
} from "./params.ts";
import {
  InvalidPrivateKeyError,
  InvalidPublicValueError,
  type PrivateKey,
  type SignatureAlgorithm,
  type SignatureAlgorithmName,
  type SignatureOptions,
} from "./provider.ts";
import { PrivateKeys } from "./private_keys.ts";

/** WebCrypto methods from the "Modern Algorithms in WebCrypto" draft that Deno 2.9 implements. */
interface ModernSubtleCrypto {
  encapsulateBits(
    algorithm: AlgorithmIdentifier,
    encapsulationKey: CryptoKey,
  ): Promise<{ ciphertext: ArrayBuffer; sharedKey: ArrayBuffer }>;
  decapsulateBits(
    algorithm: AlgorithmIdentifier,
    decapsulationKey: CryptoKey,
    ciphertext: BufferSource,
  ): Promise<ArrayBuffer>;
  getPublicKey(key: CryptoKey, keyUsages: KeyUsage[]): Promise<CryptoKey>;
}

export const subtle = crypto.subtle as SubtleCrypto & ModernSubtleCrypto;

/** Key usages the lib's `KeyUsage` union does not list yet (ML-KEM's). */
export const usages = (...names: string[]) => names as KeyUsage[];

/**
 * WebCrypto reads any `Uint8Array` view; the lib type only admits views of an `ArrayBuffer`
 * (not a `SharedArrayBuffer`). Every buffer here is an `ArrayBuffer`, so this only narrows the type.
 */
export const source = (bytes: Uint8Array) => bytes as Uint8Array<ArrayBuffer>;

/** What stands behind each private key this module made. */
interface KeyMaterial {
  /** Non-extractable. */
  readonly key: CryptoKey;
  /** ML-DSA only: the PKCS#8 seed form, for the context fallback to import. */
  readonly mlDsaPkcs8?: Uint8Array;
  /** The fallback's key, made on the first signature that needs one. */
  fallbackKey?: Promise<PrivateKey>;
}

const keyMaterial = new PrivateKeys<KeyMaterial>("WebCrypto");

/** WebCrypto's name and parameters for one of our signature algorithms. */
function webCryptoAlgorithm(params: SignatureParams): {
  key: Algorithm | EcKeyImportParams | RsaHashedImportParams;
  sign: Algorithm | EcdsaParams | RsaPssParams;
} {
  switch (params.family) {
    case "ML-DSA":
      return { key: { name: params.keyType }, sign: { name: params.keyType } };
    case "Ed25519":
      return { key: { name: "Ed25519" }, sign: { name: "Ed25519" } };
    case "ECDSA":
      return {
        key: { name: "ECDSA", namedCurve: params.keyType },
        sign: { name: "ECDSA", hash: params.hash },
      };
    case "RSA-PSS":
      // TLS 1.3 (RFC 8446 §4.2.3) and X.509 use a salt as long as the hash.
      return {
        key: { name: "RSA-PSS", hash: params.hash },
        sign: { name: "RSA-PSS", saltLength: HASH_LENGTHS[params.hash] },
      };
    case "RSA-PKCS1":
      return {
        key: { name: "RSASSA-PKCS1-v1_5", hash: params.hash },
        sign: { name: "RSASSA-PKCS1-v1_5" },
      };
  }
}

/** The raw-public-key import format WebCrypto uses for a raw key type. */
const rawPublicFormat = (type: RawKeyType) => type.startsWith("ML-DSA") ? "raw-public" : "raw";

/**
 * One signature algorithm over WebCrypto. ML-DSA with a non-empty context goes to `contextFallback`
 * (Deno refuses non-empty contexts); key containers of raw key types are parsed by keys.ts so both
 * providers accept the same encodings.
 */
export class WebCryptoSignature implements SignatureAlgorithm {
  readonly #params: SignatureParams;
  readonly #algorithm: ReturnType<typeof webCryptoAlgorithm>;
  readonly #contextFallback?: SignatureAlgorithm;

  constructor(readonly name: SignatureAlgorithmName, contextFallback?: SignatureAlgorithm) {
    this.#params = SIGNATURES[name];
    this.#algorithm = webCryptoAlgorithm(this.#params);
    this.#contextFallback = contextFallback;
  }

  async generateKeyPair() {
    const generateParams = this.#params.family.startsWith("RSA")
      ? {
        ...this.#algorithm.key,
        modulusLength: RSA_MODULUS_BITS,
        publicExponent: Uint8Array.of(1, 0, 1),
      }
      : this.#algorithm.key;
    const pair = await subtle.generateKey(generateParams, true, [
      "sign",
      "verify",
    ]) as CryptoKeyPair;
    const pkcs8 = new Uint8Array(await subtle.exportKey("pkcs8", pair.privateKey));
    const privateKey = await this.importPrivateKey(pkcs8);
    return { privateKey, publicKeySpki: privateKey.publicKeySpki, pkcs8 };
  }

  async importPrivateKey(pkcs8: Uint8Array): Promise<PrivateKey> {
    const params = this.#params;
    let key: CryptoKey;
    let publicKey: CryptoKey;
    let mlDsaPkcs8: Uint8Array | undefined;
    try {
      if (params.family === "ML-DSA") {
        const seed = decodePkcs8(params.keyType, pkcs8);
        key = await subtle.importKey("raw-seed", source(seed), this.#algorithm.key, false, [
          "sign",
        ]);
        mlDsaPkcs8 = encodePkcs8(params.keyType, seed);
      } else {
        // Parse raw key types ourselves first (same acceptance as the noble provider), then
        // hand WebCrypto the canonical encoding.
        const canonical = "keyType" in params
          ? encodePkcs8(params.keyType, decodePkcs8(params.keyType, pkcs8))
          : pkcs8;
        key = await subtle.importKey("pkcs8", source(canonical), this.#algorithm.key, false, [
          "sign",
        ]);
      }
      // Deno imports an out-of-range EC scalar and only fails here.
      publicKey = await subtle.getPublicKey(key, ["verify"]);
    } catch (error) {
      if (error instanceof InvalidPrivateKeyError) throw error;
      throw new InvalidPrivateKeyError(`${this.name}: ${(error as Error).message}`);
    }
    const publicKeySpki = "keyType" in params
      ? encodeSpki(
        params.keyType,
        new Uint8Array(await subtle.exportKey(rawPublicFormat(params.keyType), publicKey)),
      )
      : new Uint8Array(await subtle.exportKey("spki", publicKey));
    return keyMaterial.add(this.name, publicKeySpki, { key, mlDsaPkcs8 });
  }

  async sign(
    privateKey: PrivateKey,
    message: Uint8Array,
    options?: SignatureOptions,
  ): Promise<Uint8Array> {
    const material = keyMaterial.materialOf(privateKey, this.name);
    if (signingContext(this.#params, options)) {
      const fallback = this.#withContext();
      // Only ML-DSA keys get here (signingContext refuses a context elsewhere), and they have a seed.
      material.fallbackKey ??= fallback.importPrivateKey(material.mlDsaPkcs8!);
      return fallback.sign(await material.fallbackKey, message, options);
    }
    const signature = new Uint8Array(
      await subtle.sign(this.#algorithm.sign, material.key, source(message)),
    );
    return this.#params.family === "ECDSA" ? ecdsaRawToDer(signature) : signature;
  }

  async verify(
    publicKeySpki: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
    options?: SignatureOptions,
  ): Promise<boolean> {
    const params = this.#params;
    if (params.family === "ML-DSA" && contextTooLong(options)) return false;
    if (signingContext(params, options)) {
      return this.#withContext().verify(publicKeySpki, message, signature, options);
    }
    const publicKey = await this.#importPublicKey(publicKeySpki);
    let wireSignature = signature;
    if (params.family === "ECDSA") {
      try {
        wireSignature = ecdsaDerToRaw(signature, PRIVATE_KEY_LENGTHS[params.keyType]);
      } catch {
        return false;
      }
    }
    try {
      return await subtle.verify(
        this.#algorithm.sign,
        publicKey,
        source(wireSignature),
        source(message),
      );
    } catch {
      // WebCrypto defers point validation to the operation (a TypeError for an off-curve point).
      throw new InvalidPublicValueError(`${this.name} public key`);
    }
  }

  #withContext(): SignatureAlgorithm {
    if (!this.#contextFallback) throw new RangeError(`${this.name}: no context string support`);
    return this.#contextFallback;
  }

  async #importPublicKey(spki: Uint8Array): Promise<CryptoKey> {
    const params = this.#params;
    try {
      return "keyType" in params
        ? await subtle.importKey(
          rawPublicFormat(params.keyType),
          source(decodeSpki(params.keyType, spki)),
          this.#algorithm.key,
          false,
          ["verify"],
        )
        : await subtle.importKey("spki", source(spki), this.#algorithm.key, false, ["verify"]);
    } catch (error) {
      if (error instanceof InvalidPublicValueError) throw error;
      throw new InvalidPublicValueError(`${this.name} public key`);
    }
  }
}
