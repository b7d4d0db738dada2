/**
 * The FFI boundary to the system's OpenSSL libcrypto (any 3.x): the symbol table, loading and
 * feature detection, and the few helpers every call goes through. The rules this file keeps,
 * and every caller of `Libcrypto.symbols` must keep too:
 *
 * - Every buffer handed to C is checked against the length C is told, before the call
 *   (`checkLength`, `checkFits`, `checkCInt`); C never learns a length larger than the buffer.
 * - No JavaScript buffer's address outlives the call it is passed to: buffers go as FFI
 *   "buffer" arguments (the address is taken for that call only), and where C wants a pointer to
 *   a pointer (d2i/i2d, OSSL_PARAM), the address is taken from a buffer made for that one call
 *   (`cBuffer`, an ArrayBuffer's own backing store, which V8 never moves) and dropped after it.
 * - A zero-length input is passed as a one-byte buffer with length 0: Deno passes an empty view
 *   as NULL, and some OpenSSL entry points treat NULL as "keep the previous value" (EVP_MAC_init's
 *   key), not "empty".
 * - OpenSSL objects made for one operation are freed before it returns (try/finally); objects
 *   that live longer (an AEAD's cipher contexts, an imported signing key) belong to one JavaScript
 *   owner that frees them in `dispose()`, with a FinalizationRegistry only as the backstop.
 * - A failed call leaves errors on OpenSSL's thread-local queue: `fail()` drains it into the
 *   thrown `LibcryptoError`, so nothing stale is read by a later call.
 */

/** Raised when an OpenSSL call fails for a reason that is not the peer's or the caller's. */
export class LibcryptoError extends Error {
  constructor(readonly operation: string, readonly detail: string) {
    super(`libcrypto ${operation} failed${detail ? `: ${detail}` : ""}`);
    this.name = "LibcryptoError";
  }
}

/**
 * Raised before a call whose buffer does not match the length it would tell C (a caller's
 * mistake: it is a RangeError, as the other providers raise for wrong lengths).
 */
export class LibcryptoLengthError extends RangeError {
  constructor(what: string, expected: string, actual: number) {
    super(`${what} must be ${expected} bytes, got ${actual}`);
    this.name = "LibcryptoLengthError";
  }
}

const SYMBOLS = {
  OpenSSL_version_num: { parameters: [], result: "u64" },
  OpenSSL_version: { parameters: ["i32"], result: "pointer" },
  ERR_get_error: { parameters: [], result: "u64" },
  ERR_error_string_n: { parameters: ["u64", "buffer", "usize"], result: "void" },
  ERR_clear_error: { parameters: [], result: "void" },
  RAND_bytes: { parameters: ["buffer", "i32"], result: "i32" },

  // Digests.
  EVP_MD_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_Digest: {
    parameters: ["buffer", "usize", "buffer", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_MD_CTX_new: { parameters: [], result: "pointer" },
  EVP_MD_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_MD_CTX_copy_ex: { parameters: ["pointer", "pointer"], result: "i32" },
  EVP_DigestInit_ex2: { parameters: ["pointer", "pointer", "pointer"], result: "i32" },
  EVP_DigestUpdate: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  EVP_DigestFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },

  // MACs.
  EVP_MAC_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_MAC_CTX_new: { parameters: ["pointer"], result: "pointer" },
  EVP_MAC_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_MAC_CTX_set_params: { parameters: ["pointer", "buffer"], result: "i32" },
  EVP_MAC_init: { parameters: ["pointer", "buffer", "usize", "pointer"], result: "i32" },
  EVP_MAC_update: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  EVP_MAC_final: { parameters: ["pointer", "buffer", "buffer", "usize"], result: "i32" },

  // Ciphers.
  EVP_CIPHER_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  EVP_CIPHER_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_CipherInit_ex2: {
    parameters: ["pointer", "pointer", "buffer", "buffer", "i32", "pointer"],
    result: "i32",
  },
  EVP_CipherUpdate: { parameters: ["pointer", "buffer", "buffer", "buffer", "i32"], result: "i32" },
  EVP_CipherFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },

  // Keys.
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_get_base_id: { parameters: ["pointer"], result: "i32" },
  EVP_PKEY_get_bits: { parameters: ["pointer"], result: "i32" },
  EVP_PKEY_new_raw_private_key: {
    parameters: ["i32", "pointer", "buffer", "usize"],
    result: "pointer",
  },
  EVP_PKEY_new_raw_public_key: {
    parameters: ["i32", "pointer", "buffer", "usize"],
    result: "pointer",
  },
  EVP_PKEY_new_raw_public_key_ex: {
    parameters: ["pointer", "buffer", "pointer", "buffer", "usize"],
    result: "pointer",
  },
  EVP_PKEY_get_raw_private_key: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_PKEY_get_raw_public_key: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_PKEY_get_octet_string_param: {
    parameters: ["pointer", "buffer", "buffer", "usize", "buffer"],
    result: "i32",
  },
  EVP_PKEY_get_bn_param: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  BN_bn2binpad: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BN_clear_free: { parameters: ["pointer"], result: "void" },
  d2i_AutoPrivateKey: { parameters: ["pointer", "buffer", "i64"], result: "pointer" },
  d2i_PUBKEY: { parameters: ["pointer", "buffer", "i64"], result: "pointer" },
  i2d_PUBKEY: { parameters: ["pointer", "buffer"], result: "i32" },

  // Key contexts: generation, import from parameters, derivation, RSA options.
  EVP_PKEY_CTX_new_from_name: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_PKEY_CTX_new_from_pkey: {
    parameters: ["pointer", "pointer", "pointer"],
    result: "pointer",
  },
  EVP_PKEY_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_keygen_init: { parameters: ["pointer"], result: "i32" },
  EVP_PKEY_keygen: { parameters: ["pointer", "buffer"], result: "i32" },
  EVP_PKEY_CTX_set_group_name: { parameters: ["pointer", "buffer"], result: "i32" },
  EVP_PKEY_fromdata_init: { parameters: ["pointer"], result: "i32" },
  EVP_PKEY_fromdata: { parameters: ["pointer", "buffer", "i32", "buffer"], result: "i32" },
  EVP_PKEY_derive_init: { parameters: ["pointer"], result: "i32" },
  EVP_PKEY_derive_set_peer_ex: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  EVP_PKEY_derive: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_PKEY_CTX_set_rsa_padding: { parameters: ["pointer", "i32"], result: "i32" },
  EVP_PKEY_CTX_set_rsa_pss_saltlen: { parameters: ["pointer", "i32"], result: "i32" },

  // Signatures.
  EVP_DigestSignInit_ex: {
    parameters: ["pointer", "buffer", "buffer", "pointer", "pointer", "pointer", "buffer"],
    result: "i32",
  },
  EVP_DigestSign: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"],
    result: "i32",
  },
  EVP_DigestVerifyInit_ex: {
    parameters: ["pointer", "buffer", "buffer", "pointer", "pointer", "pointer", "buffer"],
    result: "i32",
  },
  EVP_DigestVerify: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "i32",
  },

  // Key encapsulation (the API is OpenSSL 3.0's; ML-KEM behind it comes with 3.5).
  EVP_PKEY_encapsulate_init: { parameters: ["pointer", "pointer"], result: "i32" },
  EVP_PKEY_encapsulate: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  EVP_PKEY_decapsulate_init: { parameters: ["pointer", "pointer"], result: "i32" },
  EVP_PKEY_decapsulate: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"],
    result: "i32",
  },

  // Post-quantum detection (the algorithms exist from OpenSSL 3.5 on).
  EVP_KEM_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_KEM_free: { parameters: ["pointer"], result: "void" },
  EVP_SIGNATURE_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_SIGNATURE_free: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

export type LibcryptoSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** A loaded libcrypto: its symbols, version and what it offers beyond OpenSSL 3.0. */
export interface Libcrypto {
  readonly symbols: LibcryptoSymbols;
  /** `OpenSSL_version(OPENSSL_VERSION)`, e.g. "OpenSSL 3.0.19 27 Jan 2026". */
  readonly version: string;
  /** The path or soname it was loaded from. */
  readonly path: string;
  /** `OPENSSL_VERSION_NUMBER`: 0xMNN00PP0L (major, minor, patch). */
  readonly versionNumber: bigint;
  /** Whether EVP_KEM_fetch finds ML-KEM-768 and EVP_SIGNATURE_fetch ML-DSA-65. */
  readonly hasMlKem: boolean;
  readonly hasMlDsa: boolean;
}

/** Why libcrypto could not be loaded (for `QSIGN_CRYPTO=libcrypto` and the banner). */
export type LibcryptoLoad = { ok: true; lib: Libcrypto } | { ok: false; reason: string };

/** Default soname; `QSIGN_LIBCRYPTO` names another file (an OpenSSL 3.5 build, say). */
export const LIBCRYPTO_SONAME = "libcrypto.so.3";

let loaded: LibcryptoLoad | undefined;

/** Loads libcrypto once per isolate; later calls return the same result. */
export function loadLibcrypto(): LibcryptoLoad {
  return loaded ??= tryLoad();
}

function tryLoad(): LibcryptoLoad {
  let path = LIBCRYPTO_SONAME;
  try {
    path = Deno.env.get("QSIGN_LIBCRYPTO") || LIBCRYPTO_SONAME;
  } catch {
    // Without env permission: the default soname.
  }
  let library: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    library = Deno.dlopen(path, SYMBOLS);
  } catch (error) {
    return { ok: false, reason: `cannot load ${path}: ${(error as Error).message}` };
  }
  const symbols = library.symbols;
  const number = BigInt(symbols.OpenSSL_version_num());
  const major = Number(number >> 28n);
  const versionPointer = symbols.OpenSSL_version(0);
  const version = versionPointer ? Deno.UnsafePointerView.getCString(versionPointer) : "unknown";
  if (major !== 3) {
    library.close();
    return { ok: false, reason: `${path} is ${version}, not OpenSSL 3.x` };
  }
  const fetched =
    (fetch: typeof symbols.EVP_KEM_fetch, free: typeof symbols.EVP_KEM_free) => (name: string) => {
      const method = fetch(null, cString(name), null);
      symbols.ERR_clear_error();
      if (!method) return false;
      free(method);
      return true;
    };
  return {
    ok: true,
    lib: {
      symbols,
      version,
      path,
      versionNumber: number,
      hasMlKem: fetched(symbols.EVP_KEM_fetch, symbols.EVP_KEM_free)("ML-KEM-768"),
      hasMlDsa: fetched(symbols.EVP_SIGNATURE_fetch, symbols.EVP_SIGNATURE_free)("ML-DSA-65"),
    },
  };
}

const encoder = new TextEncoder();

/** A NUL-terminated C string in a buffer of its own. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = cBuffer(text.length + 1);
  encoder.encodeInto(text, bytes);
  return bytes;
}

/**
 * A zeroed buffer backed by an ArrayBuffer of its own: its address is stable for as long as it is
 * reachable (V8 moves small on-heap typed arrays, never an ArrayBuffer's backing store), so it may
 * be written into a pointer-to-pointer or an OSSL_PARAM for one call.
 */
export function cBuffer(length: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(length));
}

/** The address of `bytes` (made by cBuffer) as a number C can hold, for the current call only. */
export function addressOf(bytes: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

/** A one-byte buffer that stands for a zero-length input (see the top of this file). */
const EMPTY_INPUT = cBuffer(1);

/** `bytes`, or a non-NULL stand-in when empty; pass the real length (0) beside it. */
export function input(bytes: Uint8Array): Uint8Array {
  return bytes.length ? bytes : EMPTY_INPUT;
}

/** Throws `LibcryptoLengthError` unless `bytes` is exactly `length` long. */
export function checkLength(what: string, bytes: Uint8Array, length: number): void {
  if (bytes.length !== length) throw new LibcryptoLengthError(what, String(length), bytes.length);
}

/** Throws `LibcryptoLengthError` unless `bytes` holds at least `length` bytes. */
export function checkFits(what: string, bytes: Uint8Array, length: number): void {
  if (bytes.length < length) {
    throw new LibcryptoLengthError(what, `at least ${length}`, bytes.length);
  }
}

/** Throws `LibcryptoLengthError` for a length an OpenSSL `int` parameter cannot carry. */
export function checkCInt(what: string, length: number): void {
  if (!Number.isSafeInteger(length) || length < 0 || length > 0x7fffffff) {
    throw new LibcryptoLengthError(what, "at most 2^31-1", length);
  }
}

/** Drains OpenSSL's error queue into a `LibcryptoError` for `operation` (returned, to throw). */
export function fail(lib: Libcrypto, operation: string): LibcryptoError {
  const { ERR_get_error, ERR_error_string_n } = lib.symbols;
  const details: string[] = [];
  const text = cBuffer(256);
  for (let code = BigInt(ERR_get_error()); code !== 0n; code = BigInt(ERR_get_error())) {
    if (details.length < 4) {
      ERR_error_string_n(code, text, BigInt(text.length));
      details.push(new TextDecoder().decode(text.subarray(0, text.indexOf(0))));
    }
  }
  return new LibcryptoError(operation, details.join("; "));
}

/** Discards OpenSSL's queued errors after an expected failure (a bad peer value, say). */
export function clearErrors(lib: Libcrypto): void {
  lib.symbols.ERR_clear_error();
}

/** A pointer-to-pointer cell for `TYPE **` out-parameters, read back with `cellPointer`. */
export function pointerCell(): BigUint64Array<ArrayBuffer> {
  return new BigUint64Array(new ArrayBuffer(8));
}

/** The pointer a `TYPE **` out-parameter received, or null. */
export function cellPointer(cell: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(cell[0]);
}

/** OSSL_PARAM data types (openssl/core.h). */
export const ParamType = { unsignedInteger: 2, utf8String: 4, octetString: 5 } as const;

/** One OSSL_PARAM: its key, type and data (held by the caller for the call). */
export interface Param {
  readonly key: Uint8Array<ArrayBuffer>;
  readonly type: number;
  readonly data: Uint8Array<ArrayBuffer>;
  /** For strings: the length without the terminating NUL. */
  readonly size?: number;
}

/** `sizeof(OSSL_PARAM)` on LP64: key, data_type (padded), data, data_size, return_size. */
const PARAM_SIZE = 40;

/**
 * An OSSL_PARAM array (with its terminating empty entry) over `params`; the array and every
 * buffer it points to must stay reachable until the call that takes it returns, and no longer.
 */
export function paramArray(params: readonly Param[]): Uint8Array<ArrayBuffer> {
  const array = cBuffer(PARAM_SIZE * (params.length + 1));
  const view = new DataView(array.buffer);
  params.forEach((param, index) => {
    const at = index * PARAM_SIZE;
    view.setBigUint64(at, addressOf(param.key), true);
    view.setUint32(at + 8, param.type, true);
    view.setBigUint64(at + 16, addressOf(param.data), true);
    view.setBigUint64(at + 24, BigInt(param.size ?? param.data.length), true);
    view.setBigUint64(at + 32, 0xffffffffffffffffn, true); // OSSL_PARAM_UNMODIFIED
  });
  return array;
}

/** A UTF-8 string parameter. */
export function utf8Param(key: string, value: string): Param {
  return {
    key: cString(key),
    type: ParamType.utf8String,
    data: cString(value),
    size: value.length,
  };
}

/** An octet-string parameter (copied into a buffer of its own). */
export function octetParam(key: string, value: Uint8Array): Param {
  const data = cBuffer(Math.max(value.length, 1));
  data.set(value);
  return { key: cString(key), type: ParamType.octetString, data, size: value.length };
}

/** An unsigned-integer parameter from big-endian bytes (OpenSSL wants native, little-endian). */
export function unsignedParam(key: string, bigEndian: Uint8Array): Param {
  const data = cBuffer(bigEndian.length);
  for (let i = 0; i < bigEndian.length; i++) data[i] = bigEndian[bigEndian.length - 1 - i];
  return { key: cString(key), type: ParamType.unsignedInteger, data };
}
