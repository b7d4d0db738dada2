/**
 * Small byte arrays carved from shared slabs. In Deno no typed array lives on V8's heap: every
 * `new Uint8Array` is a calloc, a backing store and, after GC, a free on a V8 thread, about
 * 0.75 µs for 48 bytes (Node, which keeps small arrays on the heap, takes 0.04 µs). A TLS
 * handshake makes dozens of small ones (digests, secrets, keys, key shares), while a view into a
 * slab costs 0.07 µs.
 *
 * Slab memory starts zeroed and no byte of it is handed out twice, so a carved array never shows
 * another's data through its own indices. Two things follow from sharing a slab:
 * - a carved array's `.buffer` is the slab: read it only through `byteOffset` and `byteLength`,
 *   and never transfer or detach it;
 * - a carved array keeps its slab (SLAB_BYTES) resident while it lives. Values a connection keeps
 *   for its lifetime (traffic secrets, IVs, a PSK) are copied into arrays of their own, so that
 *   an idle connection pins no slab.
 */

/** The largest request served from a slab; larger ones get an array of their own. */
export const SMALL_BYTES_MAX = 64;
/** Slab size: what one long-lived carved array can keep resident at most. */
export const SLAB_BYTES = 1024;

let slab = new Uint8Array(SLAB_BYTES);
let used = 0;

/** `length` zero bytes: a view into a slab when `length <= SMALL_BYTES_MAX`. */
export function smallBytes(length: number): Uint8Array {
  if (length > SMALL_BYTES_MAX) return new Uint8Array(length);
  if (used + length > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    used = 0;
  }
  const out = slab.subarray(used, used + length);
  used += length;
  return out;
}

/** `bytes` in an array of its own, for a value kept long enough to pin a slab. */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  return bytes.slice();
}
