/**
 * Byte reader and writer for the TLS presentation language (RFC 8446 §3): big-endian integers
 * and length-prefixed vectors. Reading past the end or a vector that overruns its container
 * throws `TlsAlert("decode_error")`, so malformed peer input can never escape as a TypeError.
 */
import { TlsAlert } from "../alert.ts";

/** Reads a TLS structure from a byte string; slices share the underlying buffer (no copies). */
export class ByteReader {
  #pos = 0;
  constructor(readonly bytes: Uint8Array, readonly what = "message") {}

  get remaining(): number {
    return this.bytes.length - this.#pos;
  }

  get position(): number {
    return this.#pos;
  }

  #need(n: number): void {
    if (this.remaining < n) throw new TlsAlert("decode_error", `${this.what} is truncated`);
  }

  u8(): number {
    this.#need(1);
    return this.bytes[this.#pos++];
  }

  u16(): number {
    this.#need(2);
    const b = this.bytes, p = this.#pos;
    this.#pos += 2;
    return (b[p] << 8) | b[p + 1];
  }

  u24(): number {
    this.#need(3);
    const b = this.bytes, p = this.#pos;
    this.#pos += 3;
    return (b[p] << 16) | (b[p + 1] << 8) | b[p + 2];
  }

  u32(): number {
    return this.u16() * 0x10000 + this.u16();
  }

  /** The next `n` bytes, as a view. */
  bytesN(n: number): Uint8Array {
    this.#need(n);
    const out = this.bytes.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** A vector with a `lengthBytes`-byte length prefix; `min`/`max` bound its byte length. */
  vector(lengthBytes: 1 | 2 | 3, min = 0, max = Infinity): Uint8Array {
    const len = lengthBytes === 1 ? this.u8() : lengthBytes === 2 ? this.u16() : this.u24();
    if (len < min || len > max) {
      throw new TlsAlert("decode_error", `${this.what}: vector length ${len} out of range`);
    }
    return this.bytesN(len);
  }

  /** A reader over a length-prefixed vector. */
  sub(lengthBytes: 1 | 2 | 3, what = this.what, min = 0): ByteReader {
    return new ByteReader(this.vector(lengthBytes, min), what);
  }

  /** A list of u16 values in a vector with a `lengthBytes` prefix; must be non-empty. */
  u16List(lengthBytes: 1 | 2): number[] {
    const r = this.sub(lengthBytes, this.what, 2);
    if (r.remaining % 2) throw new TlsAlert("decode_error", `${this.what}: odd u16 list`);
    const out: number[] = [];
    while (r.remaining) out.push(r.u16());
    return out;
  }

  /** Asserts that everything was consumed. */
  end(): void {
    if (this.remaining) {
      throw new TlsAlert("decode_error", `${this.what} has ${this.remaining} trailing bytes`);
    }
  }
}

/**
 * The buffers of finished writers, for the next ones: in Deno every new typed array is an
 * off-heap allocation (src/crypto/small_bytes.ts), and a handshake builds a dozen structures,
 * each of which would otherwise allocate twice (its buffer, then the copy `finish` returns). A
 * buffer is zeroed before it is kept, so that the next writer's holds nothing of what the last
 * one wrote (a ticket's PSK, say); at most SPARE_BUFFERS of at most SPARE_BUFFER_MAX bytes.
 */
const spareBuffers: Uint8Array[] = [];
const SPARE_BUFFERS = 4;
const SPARE_BUFFER_MAX = 16 * 1024;
const EMPTY = new Uint8Array(0);

/**
 * Builds a TLS structure; `vector()` writes a length prefix around whatever its callback writes.
 * `finish` returns the bytes and spends the writer.
 */
export class ByteWriter {
  #buf: Uint8Array;
  #len = 0;

  constructor(initialCapacity = 256) {
    const spare = spareBuffers.at(-1);
    this.#buf = spare && spare.length >= initialCapacity
      ? spareBuffers.pop()!
      : new Uint8Array(initialCapacity);
  }

  get length(): number {
    return this.#len;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    if (this.#buf === EMPTY) throw new TypeError("ByteWriter already finished");
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  u8(v: number): this {
    this.#reserve(1);
    this.#buf[this.#len++] = v;
    return this;
  }

  u16(v: number): this {
    this.#reserve(2);
    this.#buf[this.#len++] = v >>> 8;
    this.#buf[this.#len++] = v;
    return this;
  }

  u24(v: number): this {
    this.#reserve(3);
    this.#buf[this.#len++] = v >>> 16;
    this.#buf[this.#len++] = v >>> 8;
    this.#buf[this.#len++] = v;
    return this;
  }

  u32(v: number): this {
    return this.u16(Math.floor(v / 0x10000)).u16(v % 0x10000);
  }

  bytes(data: Uint8Array): this {
    this.#reserve(data.length);
    this.#buf.set(data, this.#len);
    this.#len += data.length;
    return this;
  }

  /** Writes a vector: a `lengthBytes` length prefix followed by what `body` writes. */
  vector(lengthBytes: 1 | 2 | 3, body: (w: this) => void): this {
    this.#reserve(lengthBytes);
    const at = this.#len;
    this.#len += lengthBytes;
    body(this);
    const len = this.#len - at - lengthBytes;
    const limit = 2 ** (8 * lengthBytes);
    if (len >= limit) throw new RangeError(`vector of ${len} bytes exceeds its length prefix`);
    for (let i = lengthBytes - 1, v = len; i >= 0; i--, v >>>= 8) this.#buf[at + i] = v & 0xff;
    return this;
  }

  /** A vector holding `data`. */
  opaque(lengthBytes: 1 | 2 | 3, data: Uint8Array): this {
    return this.vector(lengthBytes, (w) => w.bytes(data));
  }

  /** A vector of u16 values. */
  u16List(lengthBytes: 1 | 2, values: readonly number[]): this {
    return this.vector(lengthBytes, (w) => values.forEach((v) => w.u16(v)));
  }

  /** The bytes written (a copy sized to fit); the writer is spent. */
  finish(): Uint8Array {
    const buf = this.#buf;
    if (buf === EMPTY) throw new TypeError("ByteWriter already finished");
    const out = buf.slice(0, this.#len);
    if (spareBuffers.length < SPARE_BUFFERS && buf.length <= SPARE_BUFFER_MAX) {
      buf.fill(0, 0, this.#len);
      spareBuffers.push(buf);
    }
    this.#buf = EMPTY;
    this.#len = 0;
    return out;
  }
}

/** Concatenates byte strings. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Constant-time equality for secrets (MACs, binders); length is not secret. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
