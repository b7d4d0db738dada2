/**
 * P-384 key agreement from GNU Nettle (libhogweed, over GMP) through Deno FFI: the libcrypto
 * provider's P-384 wherever Nettle loads. A key share and its agreement took 0.41–0.45 ms of CPU
 * here, against 1.6–1.7 ms in OpenSSL 3.0's generic code or Deno's WebCrypto and 0.57–0.58 ms in
 * OpenSSL 3.5's optimised one (2,000 pairs in one process; tests/bench/crypto_bench.ts agrees):
 * Nettle has a fixed-base table for key generation and assembly for the field arithmetic, and its
 * ECC code is written to run in constant time. Every distribution that ships OpenSSL 3 ships
 * Nettle 3 as GnuTLS's crypto library (Debian's apt depends on it); where it does not load, the
 * provider takes P-384 from OpenSSL (3.2 on) or WebCrypto.
 *
 * The FFI rules are libcrypto_ffi.ts's, and what Nettle's API adds to them:
 * - Nettle's and GMP's objects (`mpz_t`, `struct ecc_point`, `struct ecc_scalar`) are 16-byte
 *   structs that live in JavaScript buffers of their own and point to limbs GMP allocated. Every
 *   one is made for one operation and cleared before it returns (`Operation`), its limbs zeroed
 *   first (`mpn_zero`): GMP frees memory without clearing it, and scalars and shared secrets
 *   pass through these limbs.
 * - Peer points are checked here (uncompressed, both coordinates below p) before Nettle's own
 *   on-curve check; P-384 has cofactor 1, so a point on the curve is in the prime-order group.
 * - The private scalar is drawn by rejection from the caller's CSPRNG (libcrypto's RAND_bytes):
 *   uniform in [1, n), the way FIPS 186-5 A.2.2 draws it.
 */
// deno-lint-ignore-file require-await
import { cBuffer } from "./libcrypto_ffi.ts";
import {
  checkRawPublicKey,
  hex,
  PRIVATE_KEY_LENGTHS,
  PUBLIC_KEY_LENGTHS,
  scalarInRange,
} from "./keys.ts";
import {
  InvalidPrivateKeyError,
  InvalidPublicValueError,
  type KeyAgreement,
  type KeyAgreementKeyPair,
} from "./provider.ts";
import { smallBytes } from "./small_bytes.ts";

const HOGWEED_SONAME = "libhogweed.so.6";
const GMP_SONAME = "libgmp.so.10";

const HOGWEED_SYMBOLS = {
  nettle_get_secp_384r1: { parameters: [], result: "pointer" },
  nettle_ecc_size: { parameters: ["pointer"], result: "u32" },
  nettle_ecc_point_init: { parameters: ["buffer", "pointer"], result: "void" },
  nettle_ecc_point_clear: { parameters: ["buffer"], result: "void" },
  nettle_ecc_point_set: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  nettle_ecc_point_get: { parameters: ["buffer", "buffer", "buffer"], result: "void" },
  nettle_ecc_scalar_init: { parameters: ["buffer", "pointer"], result: "void" },
  nettle_ecc_scalar_clear: { parameters: ["buffer"], result: "void" },
  nettle_ecc_scalar_set: { parameters: ["buffer", "buffer"], result: "i32" },
  nettle_ecc_point_mul: { parameters: ["buffer", "buffer", "buffer"], result: "void" },
  nettle_ecc_point_mul_g: { parameters: ["buffer", "buffer"], result: "void" },
} as const;

const GMP_SYMBOLS = {
  __gmpz_init: { parameters: ["buffer"], result: "void" },
  __gmpz_clear: { parameters: ["buffer"], result: "void" },
  // mpz_import(rop, count, order, size, endian, nails, op)
  __gmpz_import: {
    parameters: ["buffer", "usize", "i32", "usize", "i32", "usize", "buffer"],
    result: "void",
  },
  // mpz_export(rop, countp, order, size, endian, nails, op)
  __gmpz_export: {
    parameters: ["buffer", "buffer", "i32", "usize", "i32", "usize", "buffer"],
    result: "pointer",
  },
  __gmpn_zero: { parameters: ["pointer", "isize"], result: "void" },
} as const;

type HogweedSymbols = Deno.DynamicLibrary<typeof HOGWEED_SYMBOLS>["symbols"];
type GmpSymbols = Deno.DynamicLibrary<typeof GMP_SYMBOLS>["symbols"];

/** A loaded Nettle: its symbols and GMP's, and the P-384 curve. */
export interface Nettle {
  readonly hogweed: HogweedSymbols;
  readonly gmp: GmpSymbols;
  readonly p384: Deno.PointerObject;
  /** Limbs of one P-384 coordinate or scalar (6 with 64-bit limbs). */
  readonly p384Limbs: number;
}

export type NettleLoad = { ok: true; lib: Nettle } | { ok: false; reason: string };

let loaded: NettleLoad | undefined;

/** Nettle, loaded once per isolate; `ok: false` with the reason where it does not load. */
export function loadNettle(): NettleLoad {
  return loaded ??= tryLoad();
}

function tryLoad(): NettleLoad {
  let hogweed: Deno.DynamicLibrary<typeof HOGWEED_SYMBOLS>;
  let gmp: Deno.DynamicLibrary<typeof GMP_SYMBOLS>;
  try {
    gmp = Deno.dlopen(GMP_SONAME, GMP_SYMBOLS);
  } catch (error) {
    return { ok: false, reason: `cannot load ${GMP_SONAME}: ${(error as Error).message}` };
  }
  try {
    hogweed = Deno.dlopen(HOGWEED_SONAME, HOGWEED_SYMBOLS);
  } catch (error) {
    gmp.close();
    return { ok: false, reason: `cannot load ${HOGWEED_SONAME}: ${(error as Error).message}` };
  }
  const p384 = hogweed.symbols.nettle_get_secp_384r1();
  const limbs = p384 ? hogweed.symbols.nettle_ecc_size(p384) : 0;
  if (!p384 || limbs * LIMB_BYTES !== P384_BYTES) {
    hogweed.close();
    gmp.close();
    return { ok: false, reason: `${HOGWEED_SONAME}: no P-384 of 64-bit limbs` };
  }
  return { ok: true, lib: { hogweed: hogweed.symbols, gmp: gmp.symbols, p384, p384Limbs: limbs } };
}

const LIMB_BYTES = 8;
const P384_BYTES = 48;
const STRUCT_BYTES = 16;

/** The P-384 field prime (SEC 2), big-endian: both coordinates of a point lie below it. */
const P384_PRIME = hex(
  "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
);

/** Whether big-endian `value` is below `bound` (same length); variable time, for public values. */
function below(value: Uint8Array, bound: Uint8Array): boolean {
  for (let i = 0; i < bound.length; i++) {
    if (value[i] !== bound[i]) return value[i] < bound[i];
  }
  return false;
}

/**
 * The Nettle and GMP objects of one operation. Each is made through it and cleared, limbs zeroed
 * first, when it is disposed, whatever the operation did in between.
 */
class Operation implements Disposable {
  readonly #clears: (() => void)[] = [];

  constructor(private readonly lib: Nettle) {}

  /** An mpz_t, set to the big-endian `bytes` when given. */
  integer(bytes?: Uint8Array): Uint8Array<ArrayBuffer> {
    const { gmp } = this.lib;
    const z = cBuffer(STRUCT_BYTES);
    gmp.__gmpz_init(z);
    this.#clears.push(() => {
      // mpz_t: int _mp_alloc; int _mp_size; mp_limb_t *_mp_d. An mpz that never grew has no
      // limbs of its own (GMP points it at a shared constant), which must not be written.
      const allocated = new Int32Array(z.buffer, 0, 1)[0];
      if (allocated > 0) gmp.__gmpn_zero(limbsOf(z), BigInt(allocated));
      gmp.__gmpz_clear(z);
    });
    if (bytes) gmp.__gmpz_import(z, BigInt(bytes.length), 1, 1n, 1, 0n, bytes);
    return z;
  }

  /** A struct ecc_point on P-384 (x and y: twice the limbs of a coordinate). */
  point(): Uint8Array<ArrayBuffer> {
    const { hogweed, gmp, p384, p384Limbs } = this.lib;
    const point = cBuffer(STRUCT_BYTES);
    hogweed.nettle_ecc_point_init(point, p384);
    this.#clears.push(() => {
      gmp.__gmpn_zero(limbsOf(point), BigInt(2 * p384Limbs));
      hogweed.nettle_ecc_point_clear(point);
    });
    return point;
  }

  /** A struct ecc_scalar on P-384 set to `scalar`, or null when it is not in [1, n). */
  scalar(scalar: Uint8Array): Uint8Array<ArrayBuffer> | null {
    const { hogweed, gmp, p384, p384Limbs } = this.lib;
    const value = cBuffer(STRUCT_BYTES);
    hogweed.nettle_ecc_scalar_init(value, p384);
    this.#clears.push(() => {
      gmp.__gmpn_zero(limbsOf(value), BigInt(p384Limbs));
      hogweed.nettle_ecc_scalar_clear(value);
    });
    return hogweed.nettle_ecc_scalar_set(value, this.integer(scalar)) === 1 ? value : null;
  }

  /** The big-endian bytes of an mpz_t below 2^384, left-padded to 48. */
  bytes(z: Uint8Array<ArrayBuffer>, out: Uint8Array, at: number): void {
    const scratch = cBuffer(P384_BYTES);
    const count = new BigUint64Array(1);
    this.lib.gmp.__gmpz_export(scratch, count, 1, 1n, 1, 0n, z);
    const length = Number(count[0]);
    if (length > P384_BYTES) throw new RangeError(`P-384 value of ${length} bytes`);
    out.set(scratch.subarray(0, length), at + P384_BYTES - length);
    scratch.fill(0);
  }

  [Symbol.dispose](): void {
    for (const clear of this.#clears.splice(0).reverse()) clear();
  }
}

/** The limb pointer of a struct (mpz_t, ecc_point or ecc_scalar all keep it at offset 8). */
function limbsOf(struct: Uint8Array<ArrayBuffer>): Deno.PointerValue {
  return Deno.UnsafePointer.create(new BigUint64Array(struct.buffer, 8, 1)[0]);
}

/** P-384 key agreement over Nettle; `randomBytes` must be a CSPRNG. */
export function nettleP384(lib: Nettle, randomBytes: (length: number) => Uint8Array): KeyAgreement {
  const publicKeyLength = PUBLIC_KEY_LENGTHS["P-384"];
  const privateKeyLength = PRIVATE_KEY_LENGTHS["P-384"];

  function publicPoint(scalar: Uint8Array): Uint8Array {
    using operation = new Operation(lib);
    const k = operation.scalar(scalar);
    if (!k) throw new InvalidPrivateKeyError("P-384 scalar out of range");
    const point = operation.point();
    lib.hogweed.nettle_ecc_point_mul_g(point, k);
    const x = operation.integer();
    const y = operation.integer();
    lib.hogweed.nettle_ecc_point_get(point, x, y);
    const encoded = new Uint8Array(publicKeyLength);
    encoded[0] = 0x04;
    operation.bytes(x, encoded, 1);
    operation.bytes(y, encoded, 1 + P384_BYTES);
    return encoded;
  }

  function derive(scalar: Uint8Array, peer: Uint8Array): Uint8Array {
    checkRawPublicKey("P-384", peer);
    const peerX = peer.subarray(1, 1 + P384_BYTES);
    const peerY = peer.subarray(1 + P384_BYTES);
    if (!below(peerX, P384_PRIME) || !below(peerY, P384_PRIME)) {
      throw new InvalidPublicValueError("P-384 public key (coordinate not below p)");
    }
    using operation = new Operation(lib);
    const theirs = operation.point();
    if (
      lib.hogweed.nettle_ecc_point_set(
        theirs,
        operation.integer(peerX),
        operation.integer(peerY),
      ) !== 1
    ) {
      throw new InvalidPublicValueError("P-384 public key (not on the curve)");
    }
    const k = operation.scalar(scalar);
    if (!k) throw new InvalidPrivateKeyError("P-384 scalar out of range");
    const product = operation.point();
    lib.hogweed.nettle_ecc_point_mul(product, k, theirs);
    const x = operation.integer();
    lib.hogweed.nettle_ecc_point_get(product, x, null);
    const secret = smallBytes(P384_BYTES);
    operation.bytes(x, secret, 0);
    return secret;
  }

  function keyPair(scalar: Uint8Array): KeyAgreementKeyPair {
    return {
      publicKey: publicPoint(scalar),
      async deriveSharedSecret(peerPublicKey) {
        return derive(scalar, peerPublicKey);
      },
    };
  }

  return {
    name: "P-384",
    publicKeyLength,
    async generateKeyPair() {
      // n is within 2^-190 of 2^384: a draw is almost never refused, and 64 never all are.
      for (let attempt = 0; attempt < 64; attempt++) {
        const scalar = randomBytes(privateKeyLength);
        if (scalarInRange("P-384", scalar)) return keyPair(scalar);
        scalar.fill(0);
      }
      throw new Error("P-384: the random source gave 64 scalars out of range");
    },
    async keyPairFromPrivateKey(privateKey) {
      if (privateKey.length !== privateKeyLength) {
        throw new InvalidPrivateKeyError(`P-384 private key of ${privateKey.length} bytes`);
      }
      if (!scalarInRange("P-384", privateKey)) {
        throw new InvalidPrivateKeyError("P-384 scalar out of range");
      }
      return keyPair(privateKey.slice());
    },
  };
}
