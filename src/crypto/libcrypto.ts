/**
 * The libcrypto provider: the system's OpenSSL 3.x through Deno FFI and the EVP API, computing
 * synchronously (its async methods only wrap the sync work in a resolved promise). The FFI rules
 * are in libcrypto_ffi.ts; what this file adds:
 *
 * - AEADs keep one EVP_CIPHER_CTX per direction per key, keyed once (the AES key schedule, the
 *   ChaCha20 key) and re-initialised with only the nonce for each record; `dispose()` frees
 *   them, a FinalizationRegistry backstops a key that is never disposed.
 * - HMAC runs on one EVP_MAC_CTX per hash made at start-up, re-keyed per call; HKDF (RFC 5869)
 *   is Extract = one HMAC and Expand = the HMAC chain, over it.
 * - Ephemeral (EC)DH and ML-KEM key pairs hold the EVP_PKEY they were made as for their first
 *   agreement or decapsulation (the one a TLS key share has), which frees it; a later one builds
 *   the key again from the secret kept as bytes, inside the call. Imported signing keys hold
 *   their EVP_PKEY for the handle's lifetime (freed when the handle is collected; keys are few
 *   and long-lived). A FinalizationRegistry frees whatever is dropped unused.
 * - Key containers of raw key types are parsed by keys.ts first, so this provider accepts and
 *   refuses exactly the encodings the others do; ECDSA signatures must be strict DER here too.
 * - P-384 key agreement comes from Nettle (nettle.ts) wherever it loads: faster than any OpenSSL's.
 * - ML-KEM comes from libcrypto where it has it (OpenSSL 3.5 on, detected at load:
 *   `Libcrypto.hasMlKem`), from the native provider otherwise. Ephemeral ML-KEM key pairs keep
 *   their 64-byte seed (d || z) and rebuild the key to decapsulate, as (EC)DH pairs keep their
 *   secret. ML-DSA comes from the native provider unless the options ask for libcrypto's (see
 *   `LibcryptoProviderOptions.mlDsa`), which imports its keys from their seed.
 */
// The provider computes synchronously behind the async interface; `async` without `await` is
// deliberate: it turns every throw into a rejection, as callers of an async API expect.
// deno-lint-ignore-file require-await
import { ecdsaDerToRaw, readChildren, readSingle, Tag } from "./der.ts";
import { smallBytes } from "./small_bytes.ts";
import {
  addressOf,
  cBuffer,
  cellPointer,
  checkCInt,
  checkLength,
  clearErrors,
  cString,
  fail,
  input,
  type Libcrypto,
  octetParam,
  paramArray,
  pointerCell,
  unsignedParam,
  utf8Param,
} from "./libcrypto_ffi.ts";
import {
  checkRawPublicKey,
  decodePkcs8,
  decodeSpki,
  type EcCurve,
  encodePkcs8,
  encodeSpki,
  PRIVATE_KEY_LENGTHS,
  PUBLIC_KEY_LENGTHS,
  scalarInRange,
} from "./keys.ts";
import { nativeProvider } from "./native.ts";
import { loadNettle, nettleP384 } from "./nettle.ts";
import {
  AEAD_TAG_LENGTH,
  checkAeadKey,
  checkExpandLength,
  checkKemSeed,
  checkNonce,
  checkPeerLength,
  contextTooLong,
  ECDH_SECRET_LENGTHS,
  HASH_LENGTHS,
  KEM_SEED_LENGTH,
  KEM_SIZES,
  memoize,
  openedLength,
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
  type IncrementalHash,
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

type Pointer = NonNullable<Deno.PointerValue>;

/** OpenSSL's numeric key types (obj_mac.h) and control codes (evp.h, rsa.h). */
const EVP_PKEY_RSA = 6;
const EVP_PKEY_RSA_PSS = 912;
const EVP_PKEY_X25519 = 1034;
const EVP_PKEY_ED25519 = 1087;
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;
const RSA_PKCS1_PADDING = 1;
const RSA_PKCS1_PSS_PADDING = 6;
/** EVP_PKEY_fromdata selections: public key (with its parameters), and key pair. */
const EVP_PKEY_PUBLIC_KEY = 0x86;
const EVP_PKEY_KEYPAIR = 0x87;
/** FIPS 203: every ML-KEM shared secret is 32 bytes. FIPS 204 Table 2 signature sizes. */
const KEM_SHARED_SECRET_LENGTH = 32;
const ML_DSA_SIGNATURE_LENGTHS = { "ML-DSA-44": 2420, "ML-DSA-65": 3309, "ML-DSA-87": 4627 };

const MD_NAMES: Record<HashName, string> = {
  "SHA-256": "SHA2-256",
  "SHA-384": "SHA2-384",
  "SHA-512": "SHA2-512",
};
const CIPHER_NAMES: Record<AeadName, string> = {
  "AES-128-GCM": "AES-128-GCM",
  "AES-256-GCM": "AES-256-GCM",
  "ChaCha20-Poly1305": "ChaCha20-Poly1305",
};

/**
 * From 3.2 on OpenSSL has an optimised P-384 (ecp_nistp384); before, its generic code takes
 * 1.6–1.7 ms of CPU for a P-384 key share and its agreement, as Deno's WebCrypto takes about as
 * long. Nettle takes 0.41–0.45 ms, also against 3.5.9's 0.57–0.58 ms (tests/bench/crypto_bench.ts
 * and the CPU of 2,000 pairs in one process), so P-384 agreement comes from Nettle wherever it
 * loads (nettle.ts), else from OpenSSL from 3.2 on, else from native. P-384 ECDSA stays here:
 * even 3.0 signs and verifies faster than WebCrypto.
 */
const FAST_P384_VERSION = 0x30200000n;

/** Where the libcrypto provider takes P-384 key agreement from. */
export type P384Source = "libcrypto" | "nettle" | "webcrypto";

/** Choices `createLibcryptoProvider` otherwise makes from what loads and the library's version. */
export interface LibcryptoProviderOptions {
  /**
   * P-384 key agreement: Nettle where it loads, else libcrypto from OpenSSL 3.2 on, else
   * WebCrypto (the default); "nettle" falls back the same way where Nettle does not load.
   */
  readonly p384?: P384Source;
  /**
   * Whether ML-DSA runs in libcrypto where it has it (default: no). OpenSSL 3.5.9 signs ML-DSA-65
   * in about 1.5 times the time of Deno's WebCrypto (1.43 against 0.92–0.96 ms on the build
   * machine) and verifies in about the same, and a server signs once per full handshake.
   */
  readonly mlDsa?: boolean;
}

/** Makes the libcrypto provider over a loaded library. */
export function createLibcryptoProvider(
  lib: Libcrypto,
  options: LibcryptoProviderOptions = {},
): CryptoProvider {
  const f = lib.symbols;
  const nettleLoad = (options.p384 ?? "nettle") === "nettle" ? loadNettle() : undefined;
  const nettle = nettleLoad?.ok ? nettleLoad.lib : undefined;
  const p384: P384Source = nettle
    ? "nettle"
    : options.p384 === "webcrypto"
    ? "webcrypto"
    : options.p384 === "libcrypto" || lib.versionNumber >= FAST_P384_VERSION
    ? "libcrypto"
    : "webcrypto";
  const ownMlDsa = lib.hasMlDsa && (options.mlDsa ?? false);
  /** One scratch cell for `int`/`size_t` out-lengths: each call reads it back at once. */
  const intOut = new Int32Array(new ArrayBuffer(4));
  const sizeOut = new BigUint64Array(new ArrayBuffer(8));
  const finalScratch = cBuffer(32);

  const check = (result: number, operation: string) => {
    if (result !== 1) throw fail(lib, operation);
  };
  const fetched = (pointer: Deno.PointerValue, what: string): Pointer => {
    if (!pointer) throw fail(lib, `fetching ${what}`);
    return pointer;
  };

  const digests = Object.fromEntries(
    Object.entries(MD_NAMES).map((
      [name, mdName],
    ) => [name, fetched(f.EVP_MD_fetch(null, cString(mdName), null), mdName)]),
  ) as Record<HashName, Pointer>;
  const ciphers = Object.fromEntries(
    Object.entries(CIPHER_NAMES).map((
      [name, cipherName],
    ) => [name, fetched(f.EVP_CIPHER_fetch(null, cString(cipherName), null), cipherName)]),
  ) as Record<AeadName, Pointer>;

  // ---- Random bytes.

  function randomBytes(length: number): Uint8Array {
    checkCInt("random length", length);
    const bytes = new Uint8Array(length);
    for (let at = 0; at < length; at += 1 << 20) {
      const chunk = bytes.subarray(at, at + (1 << 20));
      check(f.RAND_bytes(chunk, chunk.length), "RAND_bytes");
    }
    return bytes;
  }

  // ---- Hashes.

  function hashSync(alg: HashName, data: Uint8Array): Uint8Array {
    const out = smallBytes(HASH_LENGTHS[alg]);
    check(
      f.EVP_Digest(input(data), BigInt(data.length), out, null, digests[alg], null),
      "EVP_Digest",
    );
    return out;
  }

  const mdContexts = new FinalizationRegistry<Pointer>((ctx) => f.EVP_MD_CTX_free(ctx));

  /** A running hash over its own EVP_MD_CTX, freed when the digest is read. */
  class LibcryptoHash implements IncrementalHash {
    #ctx: Pointer | null;

    constructor(ctx: Pointer, readonly length: number) {
      this.#ctx = ctx;
      mdContexts.register(this, ctx, this);
    }

    update(data: Uint8Array): IncrementalHash {
      if (data.length) check(f.EVP_DigestUpdate(this.#live(), data, BigInt(data.length)), "digest");
      return this;
    }

    clone(): IncrementalHash {
      const copy = newMdContext();
      if (f.EVP_MD_CTX_copy_ex(copy, this.#live()) !== 1) {
        f.EVP_MD_CTX_free(copy);
        throw fail(lib, "EVP_MD_CTX_copy_ex");
      }
      return new LibcryptoHash(copy, this.length);
    }

    digest(): Uint8Array {
      const ctx = this.#live();
      const out = smallBytes(this.length);
      const result = f.EVP_DigestFinal_ex(ctx, out, null);
      this.#ctx = null;
      mdContexts.unregister(this);
      f.EVP_MD_CTX_free(ctx);
      check(result, "EVP_DigestFinal_ex");
      return out;
    }

    #live(): Pointer {
      if (!this.#ctx) throw new TypeError("hash already digested (clone it to go on)");
      return this.#ctx;
    }
  }

  function newMdContext(): Pointer {
    return fetched(f.EVP_MD_CTX_new(), "EVP_MD_CTX");
  }

  function createHash(alg: HashName): IncrementalHash {
    const ctx = newMdContext();
    if (f.EVP_DigestInit_ex2(ctx, digests[alg], null) !== 1) {
      f.EVP_MD_CTX_free(ctx);
      throw fail(lib, "EVP_DigestInit_ex2");
    }
    return new LibcryptoHash(ctx, HASH_LENGTHS[alg]);
  }

  // ---- HMAC and HKDF.

  const hmacAlgorithm = fetched(f.EVP_MAC_fetch(null, cString("HMAC"), null), "HMAC");
  const macContexts = Object.fromEntries(
    (Object.keys(MD_NAMES) as HashName[]).map((name) => {
      const ctx = fetched(f.EVP_MAC_CTX_new(hmacAlgorithm), "EVP_MAC_CTX");
      check(
        f.EVP_MAC_CTX_set_params(ctx, paramArray([utf8Param("digest", MD_NAMES[name])])),
        "EVP_MAC_CTX_set_params",
      );
      return [name, ctx];
    }),
  ) as Record<HashName, Pointer>;

  /** HMAC of the concatenation of `data` (no copy to join them) into `out`. */
  function macInto(
    alg: HashName,
    key: Uint8Array,
    data: readonly Uint8Array[],
    out: Uint8Array,
  ): void {
    const ctx = macContexts[alg];
    // A non-NULL key even when empty: a NULL one would keep the previous call's key.
    check(f.EVP_MAC_init(ctx, input(key), BigInt(key.length), null), "EVP_MAC_init");
    for (const part of data) {
      if (part.length) check(f.EVP_MAC_update(ctx, part, BigInt(part.length)), "EVP_MAC_update");
    }
    const length = HASH_LENGTHS[alg];
    check(f.EVP_MAC_final(ctx, out, sizeOut, BigInt(length)), "EVP_MAC_final");
    if (Number(sizeOut[0]) !== length) throw fail(lib, "EVP_MAC_final length");
  }

  function hmacSync(alg: HashName, key: Uint8Array, data: Uint8Array): Uint8Array {
    const out = smallBytes(HASH_LENGTHS[alg]);
    macInto(alg, key, [data], out);
    return out;
  }

  /**
   * HKDF-Expand's blocks and counter live in buffers of the provider, the block wiped after each
   * expansion, so that an expansion makes one array, its output: in Deno every new typed array
   * costs about 0.7 µs (none is allocated on V8's heap), more than the HMAC's own work here,
   * and a TLS handshake expands some twenty labels.
   */
  const expandBlock = new Uint8Array(Math.max(...Object.values(HASH_LENGTHS)));
  const expandCounter = new Uint8Array(1);

  function hkdfExpandSync(
    alg: HashName,
    prk: Uint8Array,
    info: Uint8Array,
    length: number,
  ): Uint8Array {
    checkExpandLength(alg, length);
    const hashLength = HASH_LENGTHS[alg];
    const block = expandBlock.subarray(0, hashLength);
    const okm = smallBytes(length);
    try {
      for (let at = 0, i = 1; at < length; at += hashLength, i++) {
        expandCounter[0] = i;
        // T(i) = HMAC(PRK, T(i-1) | info | i), T(0) empty (RFC 5869 §2.3).
        macInto(alg, prk, i === 1 ? [info, expandCounter] : [block, info, expandCounter], block);
        okm.set(block.subarray(0, Math.min(hashLength, length - at)), at);
      }
    } finally {
      block.fill(0);
    }
    return okm;
  }

  // ---- AEADs.

  const cipherContexts = new FinalizationRegistry<Pointer[]>((contexts) => {
    for (const ctx of contexts) f.EVP_CIPHER_CTX_free(ctx);
  });

  /** One traffic key: an encrypting and a decrypting context, each keyed on first use. */
  class LibcryptoAead extends SyncAead {
    readonly #cipher: Pointer;
    #key: Uint8Array | null;
    /** [encrypt, decrypt]; the same array is the registry's held value, so freeing sees both. */
    readonly #contexts: Pointer[] = [];
    #encrypt: Pointer | null = null;
    #decrypt: Pointer | null = null;

    constructor(alg: AeadName, key: Uint8Array) {
      super();
      this.#cipher = ciphers[alg];
      this.#key = key.slice();
      cipherContexts.register(this, this.#contexts, this);
    }

    sealIntoSync(
      nonce: Uint8Array,
      parts: readonly Uint8Array[],
      aad: Uint8Array,
      out: Uint8Array,
    ): void {
      checkNonce(nonce);
      const length = sealedLength(parts, out);
      checkCInt("AEAD plaintext", length);
      checkCInt("AEAD additional data", aad.length);
      const ctx = this.#encrypt ??= this.#newContext(1);
      check(f.EVP_CipherInit_ex2(ctx, null, null, nonce, 1, null), "AEAD nonce");
      if (aad.length) this.#update(ctx, null, aad);
      let at = 0;
      for (const part of parts) {
        if (!part.length) continue;
        // OpenSSL encrypts in place only when input and output start together.
        const source = overlapsElsewhere(part, out, at) ? part.slice() : part;
        this.#update(ctx, out.subarray(at, at + part.length), source);
        at += part.length;
      }
      check(f.EVP_CipherFinal_ex(ctx, finalScratch, intOut), "AEAD seal");
      const tag = out.subarray(at, at + AEAD_TAG_LENGTH);
      check(f.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, tag.length, tag), "AEAD tag");
    }

    override openSync(nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array {
      if (ciphertext.length < AEAD_TAG_LENGTH) throw new AeadAuthError();
      const plaintext = new Uint8Array(ciphertext.length - AEAD_TAG_LENGTH);
      this.openIntoSync(nonce, ciphertext, aad, plaintext);
      return plaintext;
    }

    override openIntoSync(
      nonce: Uint8Array,
      ciphertext: Uint8Array,
      aad: Uint8Array,
      out: Uint8Array,
    ): void {
      checkNonce(nonce);
      const length = openedLength(ciphertext, out);
      checkCInt("AEAD ciphertext", length);
      checkCInt("AEAD additional data", aad.length);
      const ctx = this.#decrypt ??= this.#newContext(0);
      check(f.EVP_CipherInit_ex2(ctx, null, null, nonce, 0, null), "AEAD nonce");
      if (aad.length) this.#update(ctx, null, aad);
      if (length) this.#update(ctx, out, ciphertext.subarray(0, length));
      // OpenSSL copies the expected tag; the final call compares it in constant time.
      const tag = ciphertext.subarray(length);
      check(f.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, tag.length, tag), "AEAD tag");
      if (f.EVP_CipherFinal_ex(ctx, finalScratch, intOut) !== 1) {
        clearErrors(lib);
        out.fill(0);
        throw new AeadAuthError();
      }
    }

    dispose(): void {
      cipherContexts.unregister(this);
      for (const ctx of this.#contexts.splice(0)) f.EVP_CIPHER_CTX_free(ctx);
      this.#encrypt = this.#decrypt = null;
      this.#key?.fill(0);
      this.#key = null;
    }

    /** EVP_CipherUpdate of all of `data` into `out` (or into the AAD, for a null `out`). */
    #update(ctx: Pointer, out: Uint8Array | null, data: Uint8Array): void {
      if (out) checkLength("AEAD output", out, data.length);
      check(f.EVP_CipherUpdate(ctx, out, intOut, data, data.length), "AEAD update");
      // The AAD (no output) reports its own length or nothing, depending on the cipher.
      if (out && intOut[0] !== data.length) throw fail(lib, "AEAD update length");
    }

    #newContext(encrypt: 0 | 1): Pointer {
      if (!this.#key) throw new TypeError("AEAD key used after dispose()");
      const ctx = fetched(f.EVP_CIPHER_CTX_new(), "EVP_CIPHER_CTX");
      this.#contexts.push(ctx);
      check(f.EVP_CipherInit_ex2(ctx, this.#cipher, this.#key, null, encrypt, null), "AEAD key");
      return ctx;
    }
  }

  function aeadSync(alg: AeadName, key: Uint8Array): Aead {
    checkAeadKey(alg, key);
    return new LibcryptoAead(alg, key);
  }

  // ---- Keys: helpers shared by key agreement and signatures.

  /** Runs `use` on a new EVP_PKEY_CTX for `name`, freeing it after. */
  function withNamedContext<T>(name: string, use: (ctx: Pointer) => T): T {
    const ctx = fetched(f.EVP_PKEY_CTX_new_from_name(null, cString(name), null), name);
    try {
      return use(ctx);
    } finally {
      f.EVP_PKEY_CTX_free(ctx);
    }
  }

  /** An EVP_PKEY from OSSL_PARAMs (EC keys: group, pub, priv); null when OpenSSL refuses it. */
  function ecKeyFromData(
    curve: EcCurve,
    publicKey: Uint8Array,
    scalar?: Uint8Array,
  ): Pointer | null {
    return withNamedContext("EC", (ctx) => {
      check(f.EVP_PKEY_fromdata_init(ctx), "EVP_PKEY_fromdata_init");
      const params = [utf8Param("group", curve), octetParam("pub", publicKey)];
      if (scalar) params.push(unsignedParam("priv", scalar));
      const cell = pointerCell();
      const selection = scalar ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY;
      if (f.EVP_PKEY_fromdata(ctx, cell, selection, paramArray(params)) !== 1) {
        clearErrors(lib);
        return null;
      }
      return cellPointer(cell);
    });
  }

  /** `length` bytes of the octet-string parameter `name` of a key (the EC point, say). */
  function octetStringParam(pkey: Pointer, name: string, length: number): Uint8Array {
    const out = smallBytes(length);
    check(
      f.EVP_PKEY_get_octet_string_param(pkey, cString(name), out, BigInt(out.length), sizeOut),
      `EVP_PKEY_get_octet_string_param ${name}`,
    );
    if (Number(sizeOut[0]) !== length) throw fail(lib, `${name} length`);
    return out;
  }

  /** A raw public or private key of an X25519/Ed25519 EVP_PKEY. */
  function rawKey(pkey: Pointer, which: "public" | "private", length: number): Uint8Array {
    const out = smallBytes(length);
    sizeOut[0] = BigInt(length);
    const get = which === "public" ? f.EVP_PKEY_get_raw_public_key : f.EVP_PKEY_get_raw_private_key;
    check(get(pkey, out, sizeOut), `EVP_PKEY_get_raw_${which}_key`);
    if (Number(sizeOut[0]) !== length) throw fail(lib, `raw ${which} key length`);
    return out;
  }

  /** An EC key's private scalar, big-endian in `length` bytes. */
  function ecScalar(pkey: Pointer, length: number): Uint8Array {
    const cell = pointerCell();
    check(f.EVP_PKEY_get_bn_param(pkey, cString("priv"), cell), "EVP_PKEY_get_bn_param");
    const bn = cellPointer(cell)!;
    try {
      const out = smallBytes(length);
      if (f.BN_bn2binpad(bn, out, length) !== length) throw fail(lib, "BN_bn2binpad");
      return out;
    } finally {
      f.BN_clear_free(bn);
    }
  }

  /**
   * Decodes DER with a d2i function: null unless it parses and consumes exactly `der`. The DER is
   * copied into a buffer of its own, whose address goes into the `const unsigned char **` cell.
   */
  function d2i(
    decode: (a: null, pp: BigUint64Array<ArrayBuffer>, length: bigint) => Deno.PointerValue,
    der: Uint8Array,
  ): Pointer | null {
    checkCInt("DER input", der.length);
    if (!der.length) return null;
    const copy = cBuffer(der.length);
    copy.set(der);
    const cell = pointerCell();
    const start = addressOf(copy);
    cell[0] = start;
    const pkey = decode(null, cell, BigInt(der.length));
    if (!pkey) {
      clearErrors(lib);
      return null;
    }
    if (cell[0] - start !== BigInt(der.length)) {
      f.EVP_PKEY_free(pkey);
      return null;
    }
    return pkey;
  }

  /** Encodes with an i2d function (length first, then into a buffer of that size). */
  function i2d(
    encode: (a: Pointer, pp: BigUint64Array<ArrayBuffer> | null) => number,
    object: Pointer,
    what: string,
  ): Uint8Array {
    const length = encode(object, null);
    if (length <= 0) throw fail(lib, what);
    const out = cBuffer(length);
    const cell = pointerCell();
    cell[0] = addressOf(out);
    if (encode(object, cell) !== length) throw fail(lib, what);
    return out;
  }

  /** Runs `use` on `pkey` and frees it after. */
  function using<T>(pkey: Pointer, use: (pkey: Pointer) => T): T {
    try {
      return use(pkey);
    } finally {
      f.EVP_PKEY_free(pkey);
    }
  }

  // ---- Key agreement.

  const agreementKeys = new FinalizationRegistry<Pointer>((pkey) => f.EVP_PKEY_free(pkey));

  /** Key generation contexts, one per curve, initialised once and reused. */
  const keygenContexts = memoize((name: EcdhName): Pointer => {
    const ctx = fetched(
      f.EVP_PKEY_CTX_new_from_name(null, cString(name === "X25519" ? "X25519" : "EC"), null),
      name,
    );
    check(f.EVP_PKEY_keygen_init(ctx), "EVP_PKEY_keygen_init");
    if (name !== "X25519") check(f.EVP_PKEY_CTX_set_group_name(ctx, cString(name)), "group");
    return ctx;
  });

  function generate(ctx: Pointer): Pointer {
    const cell = pointerCell();
    check(f.EVP_PKEY_keygen(ctx, cell), "EVP_PKEY_keygen");
    return cellPointer(cell)!;
  }

  function keyAgreement(name: EcdhName): KeyAgreement {
    const publicKeyLength = PUBLIC_KEY_LENGTHS[name];
    const privateKeyLength = PRIVATE_KEY_LENGTHS[name];

    /** Our key pair and the peer's key as EVP_PKEYs, for one derivation; freed after. */
    function derive(
      privateKey: Uint8Array,
      publicKey: Uint8Array,
      peer: Uint8Array,
      held: Pointer | null,
    ) {
      const own = held ?? (name === "X25519"
        ? f.EVP_PKEY_new_raw_private_key(
          EVP_PKEY_X25519,
          null,
          privateKey,
          BigInt(privateKey.length),
        )
        : ecKeyFromData(name, publicKey, privateKey));
      if (!own) throw fail(lib, `${name} private key`);
      return using(own, () => {
        const theirs = name === "X25519"
          ? f.EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, null, peer, BigInt(peer.length))
          : ecKeyFromData(name, peer);
        if (!theirs) {
          clearErrors(lib);
          throw new InvalidPublicValueError(`${name} public key`);
        }
        return using(theirs, () => {
          const ctx = fetched(f.EVP_PKEY_CTX_new_from_pkey(null, own, null), "derive");
          try {
            check(f.EVP_PKEY_derive_init(ctx), "EVP_PKEY_derive_init");
            // The peer's point is already known to be on the curve (EVP_PKEY_fromdata checks
            // that), which for these prime-order curves is all there is to check: OpenSSL's own
            // validation would add a multiplication by the group order, doubling the cost.
            if (f.EVP_PKEY_derive_set_peer_ex(ctx, theirs, 0) !== 1) {
              clearErrors(lib);
              throw new InvalidPublicValueError(`${name} public key`);
            }
            const secret = smallBytes(ECDH_SECRET_LENGTHS[name]);
            sizeOut[0] = BigInt(secret.length);
            if (f.EVP_PKEY_derive(ctx, secret, sizeOut) !== 1) {
              clearErrors(lib);
              // X25519: OpenSSL refuses the all-zero result of a low-order point (RFC 7748 §6.1).
              throw new InvalidPublicValueError(`${name} public key`);
            }
            if (Number(sizeOut[0]) !== secret.length) throw fail(lib, "derived length");
            return secret;
          } finally {
            f.EVP_PKEY_CTX_free(ctx);
          }
        });
      });
    }

    /**
     * A key pair over its secret bytes and the EVP_PKEY it was made as, which serves (and is
     * freed by) its first agreement, the one a TLS key share has; later ones rebuild the key
     * from the bytes, and a pair never used is freed by the registry.
     */
    function keyPair(pkey: Pointer): KeyAgreementKeyPair {
      let privateKey: Uint8Array;
      let publicKey: Uint8Array;
      try {
        [privateKey, publicKey] = name === "X25519"
          ? [rawKey(pkey, "private", privateKeyLength), rawKey(pkey, "public", publicKeyLength)]
          : [
            ecScalar(pkey, privateKeyLength),
            octetStringParam(pkey, "encoded-pub-key", publicKeyLength),
          ];
      } catch (error) {
        f.EVP_PKEY_free(pkey);
        throw error;
      }
      let held: Pointer | null = pkey;
      const pair: KeyAgreementKeyPair = {
        publicKey,
        async deriveSharedSecret(peerPublicKey) {
          checkRawPublicKey(name, peerPublicKey);
          const own = held;
          if (own) {
            held = null;
            agreementKeys.unregister(pair);
          }
          const secret = derive(privateKey, publicKey, peerPublicKey, own);
          if (name === "X25519" && secret.every((byte) => byte === 0)) {
            throw new InvalidPublicValueError("X25519 public key (all-zero shared secret)");
          }
          return secret;
        },
      };
      agreementKeys.register(pair, pkey, pair);
      return pair;
    }

    return {
      name,
      publicKeyLength,
      async generateKeyPair() {
        return keyPair(generate(keygenContexts(name)));
      },
      async keyPairFromPrivateKey(privateKey) {
        if (privateKey.length !== privateKeyLength) {
          throw new InvalidPrivateKeyError(`${name} private key of ${privateKey.length} bytes`);
        }
        if (name === "X25519") {
          const pkey = f.EVP_PKEY_new_raw_private_key(
            EVP_PKEY_X25519,
            null,
            privateKey,
            BigInt(privateKey.length),
          );
          if (!pkey) throw fail(lib, "X25519 private key");
          return keyPair(pkey);
        }
        if (!scalarInRange(name, privateKey)) {
          throw new InvalidPrivateKeyError(`${name} scalar out of range`);
        }
        // OpenSSL derives the public point when it decodes an ECPrivateKey without one.
        const pkey = d2i(f.d2i_AutoPrivateKey, encodePkcs8(name, privateKey));
        if (!pkey) throw fail(lib, `${name} private key`);
        return keyPair(pkey);
      },
    };
  }

  // ---- ML-KEM (OpenSSL 3.5 on).

  const kemKeys = new FinalizationRegistry<Pointer>((pkey) => f.EVP_PKEY_free(pkey));

  function kem(name: KemName): Kem {
    const { publicKey: publicKeyLength, ciphertext: ciphertextLength } = KEM_SIZES[name];
    const secretLength = new BigUint64Array(new ArrayBuffer(8));

    /**
     * The pair holds the EVP_PKEY it was made with until its first decapsulation (the one a TLS
     * key share has), which frees it; a later one rebuilds the key from the seed, and a pair
     * never used is freed by the registry.
     */
    function keyPair(seed: Uint8Array): KemKeyPair {
      let held = keyFromSeed(name, seed);
      if (!held) throw fail(lib, `${name} key from seed`);
      let publicKey: Uint8Array;
      try {
        publicKey = rawKey(held, "public", publicKeyLength);
      } catch (error) {
        f.EVP_PKEY_free(held);
        throw error;
      }
      const pair: KemKeyPair = {
        publicKey,
        async decapsulate(ciphertext) {
          checkPeerLength(`${name} ciphertext`, ciphertext, ciphertextLength);
          let pkey = held;
          if (pkey) {
            held = null;
            kemKeys.unregister(pair);
          } else {
            pkey = keyFromSeed(name, seed);
            if (!pkey) throw fail(lib, `${name} key from seed`);
          }
          return using(pkey, (key) =>
            withKeyContext(key, (ctx) => {
              check(f.EVP_PKEY_decapsulate_init(ctx, null), "EVP_PKEY_decapsulate_init");
              const secret = smallBytes(KEM_SHARED_SECRET_LENGTH);
              sizeOut[0] = BigInt(secret.length);
              check(
                f.EVP_PKEY_decapsulate(ctx, secret, sizeOut, ciphertext, BigInt(ciphertext.length)),
                "EVP_PKEY_decapsulate",
              );
              if (Number(sizeOut[0]) !== secret.length) throw fail(lib, "shared secret length");
              return secret;
            }));
        },
      };
      kemKeys.register(pair, held, pair);
      return pair;
    }

    return {
      name,
      publicKeyLength,
      ciphertextLength,
      generateKeyPair: async () => keyPair(randomBytes(KEM_SEED_LENGTH)),
      async keyPairFromSeed(seed) {
        checkKemSeed(seed);
        return keyPair(seed.slice());
      },
      async encapsulate(publicKey) {
        checkPeerLength(`${name} encapsulation key`, publicKey, publicKeyLength);
        // OpenSSL runs the FIPS 203 §7.2 modulus check on import.
        const pkey = rawPublicKey(name, publicKey);
        if (!pkey) throw new InvalidPublicValueError(`${name} encapsulation key`);
        return using(pkey, () =>
          withKeyContext(pkey, (ctx) => {
            check(f.EVP_PKEY_encapsulate_init(ctx, null), "EVP_PKEY_encapsulate_init");
            const ciphertext = new Uint8Array(ciphertextLength);
            const sharedSecret = smallBytes(KEM_SHARED_SECRET_LENGTH);
            sizeOut[0] = BigInt(ciphertext.length);
            secretLength[0] = BigInt(sharedSecret.length);
            check(
              f.EVP_PKEY_encapsulate(ctx, ciphertext, sizeOut, sharedSecret, secretLength),
              "EVP_PKEY_encapsulate",
            );
            if (
              Number(sizeOut[0]) !== ciphertext.length ||
              Number(secretLength[0]) !== sharedSecret.length
            ) {
              throw fail(lib, "encapsulation lengths");
            }
            return { ciphertext, sharedSecret };
          }));
      },
    };
  }

  /** Runs `use` on a new EVP_PKEY_CTX over `pkey`, freeing it after. */
  function withKeyContext<T>(pkey: Pointer, use: (ctx: Pointer) => T): T {
    const ctx = fetched(f.EVP_PKEY_CTX_new_from_pkey(null, pkey, null), "EVP_PKEY_CTX");
    try {
      return use(ctx);
    } finally {
      f.EVP_PKEY_CTX_free(ctx);
    }
  }

  // ---- Signatures.

  /** Imported signing keys: the EVP_PKEY, freed when the handle is collected. */
  const signingKeys = new PrivateKeys<Pointer>("libcrypto");
  const pkeys = new FinalizationRegistry<Pointer>((pkey) => f.EVP_PKEY_free(pkey));

  type LibcryptoParams = SignatureParams;

  /** An ML-KEM or ML-DSA EVP_PKEY from its seed; null when OpenSSL refuses it. */
  function keyFromSeed(algorithm: string, seed: Uint8Array): Pointer | null {
    return withNamedContext(algorithm, (ctx) => {
      check(f.EVP_PKEY_fromdata_init(ctx), "EVP_PKEY_fromdata_init");
      const cell = pointerCell();
      const params = paramArray([octetParam("seed", seed)]);
      if (f.EVP_PKEY_fromdata(ctx, cell, EVP_PKEY_KEYPAIR, params) !== 1) {
        clearErrors(lib);
        return null;
      }
      return cellPointer(cell);
    });
  }

  /** An ML-KEM or ML-DSA public key from its raw form; null when OpenSSL refuses it. */
  function rawPublicKey(algorithm: string, key: Uint8Array): Pointer | null {
    const pkey = f.EVP_PKEY_new_raw_public_key_ex(
      null,
      cString(algorithm),
      null,
      input(key),
      BigInt(key.length),
    );
    if (!pkey) clearErrors(lib);
    return pkey;
  }

  /** A fresh private scalar or key of a raw key type, from OpenSSL's DRBG. */
  function randomPrivateKey(params: Extract<LibcryptoParams, { keyType: unknown }>): Uint8Array {
    for (;;) {
      const candidate = randomBytes(PRIVATE_KEY_LENGTHS[params.keyType]);
      if (params.family !== "ECDSA" || scalarInRange(params.keyType, candidate)) return candidate;
    }
  }

  /** Whether `der` is a PKCS#8 PrivateKeyInfo at all (d2i_AutoPrivateKey also takes others). */
  function isPkcs8(der: Uint8Array): boolean {
    try {
      const [version, algorithm, key] = readChildren(readSingle(der, Tag.sequence));
      return version?.tag === Tag.integer && algorithm?.tag === Tag.sequence &&
        key?.tag === Tag.octetString;
    } catch {
      return false;
    }
  }

  class LibcryptoSignature implements SignatureAlgorithm {
    readonly #params: LibcryptoParams;
    readonly #mdName: Uint8Array | null;

    constructor(readonly name: SignatureAlgorithmName, params: LibcryptoParams) {
      this.#params = params;
      this.#mdName = "hash" in params ? cString(MD_NAMES[params.hash]) : null;
    }

    async generateKeyPair() {
      const params = this.#params;
      if (!("keyType" in params)) {
        // RSA key generation takes half a second or more: WebCrypto runs it off the event loop.
        const { pkcs8 } = await nativeProvider.signature(this.name).generateKeyPair();
        const privateKey = await this.importPrivateKey(pkcs8);
        return { privateKey, publicKeySpki: privateKey.publicKeySpki, pkcs8 };
      }
      const pkcs8 = encodePkcs8(params.keyType, randomPrivateKey(params));
      const privateKey = await this.importPrivateKey(pkcs8);
      return { privateKey, publicKeySpki: privateKey.publicKeySpki, pkcs8 };
    }

    async importPrivateKey(pkcs8: Uint8Array): Promise<PrivateKey> {
      const params = this.#params;
      let pkey: Pointer | null;
      let spki: () => Uint8Array;
      if (params.family === "ML-DSA") {
        const type = params.keyType;
        pkey = keyFromSeed(type, decodePkcs8(type, pkcs8));
        spki = () => encodeSpki(type, rawKey(pkey!, "public", PUBLIC_KEY_LENGTHS[type]));
      } else if (params.family === "Ed25519") {
        const raw = decodePkcs8("Ed25519", pkcs8);
        pkey = f.EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, null, raw, BigInt(raw.length));
        spki = () => encodeSpki("Ed25519", rawKey(pkey!, "public", PUBLIC_KEY_LENGTHS.Ed25519));
      } else if (params.family === "ECDSA") {
        const curve = params.keyType;
        const scalar = decodePkcs8(curve, pkcs8);
        if (!scalarInRange(curve, scalar)) {
          throw new InvalidPrivateKeyError(`${curve} scalar out of range`);
        }
        pkey = d2i(f.d2i_AutoPrivateKey, encodePkcs8(curve, scalar));
        spki = () =>
          encodeSpki(
            curve,
            octetStringParam(pkey!, "encoded-pub-key", PUBLIC_KEY_LENGTHS[curve]),
          );
      } else {
        pkey = isPkcs8(pkcs8) ? d2i(f.d2i_AutoPrivateKey, pkcs8) : null;
        if (pkey && !this.#isRsa(pkey)) {
          f.EVP_PKEY_free(pkey);
          throw new InvalidPrivateKeyError(`${this.name}: not an RSA key`);
        }
        spki = () => i2d(f.i2d_PUBKEY, pkey!, "i2d_PUBKEY");
      }
      if (!pkey) {
        clearErrors(lib);
        throw new InvalidPrivateKeyError(`${this.name}: libcrypto cannot import the key`);
      }
      let publicKeySpki: Uint8Array;
      try {
        publicKeySpki = spki();
      } catch (error) {
        f.EVP_PKEY_free(pkey);
        throw error;
      }
      const handle = signingKeys.add(this.name, publicKeySpki, pkey);
      pkeys.register(handle, pkey);
      return handle;
    }

    async sign(
      privateKey: PrivateKey,
      message: Uint8Array,
      options?: SignatureOptions,
    ): Promise<Uint8Array> {
      const context = signingContext(this.#params, options);
      const pkey = signingKeys.materialOf(privateKey, this.name);
      return this.#withDigestContext(pkey, "sign", context, (mctx) => {
        const capacity = this.#signatureCapacity(pkey);
        const signature = new Uint8Array(capacity);
        sizeOut[0] = BigInt(capacity);
        check(
          f.EVP_DigestSign(mctx, signature, sizeOut, input(message), BigInt(message.length)),
          "EVP_DigestSign",
        );
        const length = Number(sizeOut[0]);
        if (length > capacity) throw fail(lib, "signature length");
        return signature.slice(0, length);
      });
    }

    async verify(
      publicKeySpki: Uint8Array,
      message: Uint8Array,
      signature: Uint8Array,
      options?: SignatureOptions,
    ): Promise<boolean> {
      const params = this.#params;
      const pkey = this.#importPublicKey(publicKeySpki);
      return using(pkey, () => {
        // FIPS 204: a context over 255 bytes verifies nothing.
        if (params.family === "ML-DSA" && contextTooLong(options)) return false;
        const context = signingContext(params, options);
        if (params.family === "ECDSA") {
          try {
            // The same strict DER the other providers require.
            ecdsaDerToRaw(signature, PRIVATE_KEY_LENGTHS[params.keyType]);
          } catch {
            return false;
          }
        }
        return this.#withDigestContext(pkey, "verify", context, (mctx) => {
          const verified = f.EVP_DigestVerify(
            mctx,
            input(signature),
            BigInt(signature.length),
            input(message),
            BigInt(message.length),
          );
          if (verified !== 1) clearErrors(lib);
          return verified === 1;
        });
      });
    }

    #isRsa(pkey: Pointer): boolean {
      const id = f.EVP_PKEY_get_base_id(pkey);
      return id === EVP_PKEY_RSA || (this.#params.family === "RSA-PSS" && id === EVP_PKEY_RSA_PSS);
    }

    /** The largest signature `pkey` makes: DER ECDSA integers may carry a sign byte each. */
    #signatureCapacity(pkey: Pointer): number {
      const params = this.#params;
      if (params.family === "ML-DSA") return ML_DSA_SIGNATURE_LENGTHS[params.keyType];
      if (params.family === "Ed25519") return 64;
      if (params.family === "ECDSA") return 2 * PRIVATE_KEY_LENGTHS[params.keyType] + 9;
      return Math.ceil(f.EVP_PKEY_get_bits(pkey) / 8);
    }

    /** A key from a SubjectPublicKeyInfo: InvalidPublicValueError for one this cannot use. */
    #importPublicKey(spki: Uint8Array): Pointer {
      const params = this.#params;
      let pkey: Pointer | null;
      if (params.family === "ML-DSA") {
        pkey = rawPublicKey(params.keyType, decodeSpki(params.keyType, spki));
      } else if (params.family === "Ed25519") {
        const raw = decodeSpki("Ed25519", spki);
        pkey = f.EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, null, raw, BigInt(raw.length));
      } else if (params.family === "ECDSA") {
        // Refuses points off the curve.
        pkey = ecKeyFromData(params.keyType, decodeSpki(params.keyType, spki));
      } else {
        pkey = d2i(f.d2i_PUBKEY, spki);
        if (pkey && !this.#isRsa(pkey)) {
          f.EVP_PKEY_free(pkey);
          pkey = null;
        }
      }
      if (!pkey) {
        clearErrors(lib);
        throw new InvalidPublicValueError(`${this.name} public key`);
      }
      return pkey;
    }

    /**
     * Runs `use` on an EVP_MD_CTX set up to sign or verify with `pkey` (and, for ML-DSA, the
     * context string); frees it after.
     */
    #withDigestContext<T>(
      pkey: Pointer,
      mode: "sign" | "verify",
      context: Uint8Array | undefined,
      use: (mctx: Pointer) => T,
    ): T {
      const mctx = newMdContext();
      try {
        const cell = pointerCell();
        const init = mode === "sign" ? f.EVP_DigestSignInit_ex : f.EVP_DigestVerifyInit_ex;
        const params = context ? paramArray([octetParam("context-string", context)]) : null;
        if (init(mctx, cell, this.#mdName, null, null, pkey, params) !== 1) {
          if (mode === "sign") throw fail(lib, `${this.name} sign init`);
          clearErrors(lib);
          throw new InvalidPublicValueError(`${this.name} public key`);
        }
        const family = this.#params.family;
        if (family === "RSA-PSS" || family === "RSA-PKCS1") {
          const pctx = cellPointer(cell);
          check(
            f.EVP_PKEY_CTX_set_rsa_padding(
              pctx,
              family === "RSA-PSS" ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING,
            ),
            "RSA padding",
          );
          // TLS 1.3 (RFC 8446 §4.2.3) and X.509 use a salt as long as the hash; MGF1 uses it too.
          if (family === "RSA-PSS" && "hash" in this.#params) {
            check(
              f.EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, HASH_LENGTHS[this.#params.hash]),
              "RSA-PSS salt length",
            );
          }
        }
        return use(mctx);
      } finally {
        f.EVP_MD_CTX_free(mctx);
      }
    }
  }

  function signature(name: SignatureAlgorithmName): SignatureAlgorithm {
    const params = SIGNATURES[name];
    return params.family === "ML-DSA" && !ownMlDsa
      ? nativeProvider.signature(name)
      : new LibcryptoSignature(name, params);
  }

  return {
    name: "libcrypto",
    library: lib.version,
    primitives: {
      "random": "libcrypto",
      "SHA-2": "libcrypto",
      "HMAC/HKDF": "libcrypto",
      "AES-GCM": "libcrypto",
      "ChaCha20-Poly1305": "libcrypto",
      "X25519": "libcrypto",
      "ECDH P-256": "libcrypto",
      "ECDH P-384": p384 === "webcrypto" ? nativeProvider.primitives["ECDH P-384"] : p384,
      "ECDSA": "libcrypto",
      "Ed25519": "libcrypto",
      "RSA": "libcrypto",
      "ML-KEM": lib.hasMlKem ? "libcrypto" : nativeProvider.primitives["ML-KEM"],
      "ML-DSA": ownMlDsa ? "libcrypto" : nativeProvider.primitives["ML-DSA"],
    },
    randomBytes,
    hash: async (alg, data) => hashSync(alg, data),
    hashSync,
    createHash,
    hmac: async (alg, key, data) => hmacSync(alg, key, data),
    hmacSync,
    hkdfExtract: async (alg, salt, ikm) => hmacSync(alg, salt, ikm),
    hkdfExtractSync: (alg, salt, ikm) => hmacSync(alg, salt, ikm),
    hkdfExpand: async (alg, prk, info, length) => hkdfExpandSync(alg, prk, info, length),
    hkdfExpandSync,
    aead: async (alg, key) => aeadSync(alg, key),
    aeadSync,
    kem: lib.hasMlKem ? memoize(kem) : nativeProvider.kem,
    keyAgreement: memoize((name: EcdhName) => {
      if (name !== "P-384" || p384 === "libcrypto") return keyAgreement(name);
      return nettle ? nettleP384(nettle, randomBytes) : nativeProvider.keyAgreement(name);
    }),
    signature: memoize(signature),
  };
}

/** Whether `part` shares memory with `out` other than exactly at `out[at]` (in place). */
function overlapsElsewhere(part: Uint8Array, out: Uint8Array, at: number): boolean {
  if (part.buffer !== out.buffer) return false;
  const start = part.byteOffset;
  const end = start + part.length;
  const outStart = out.byteOffset;
  const outEnd = outStart + out.length;
  return start < outEnd && outStart < end && start !== outStart + at;
}
