/**
 * ByteWriter reuses the buffers of finished writers: what `finish` returns is the writer's bytes
 * alone, in memory of its own, also when writers nest or follow one another; a finished writer
 * is spent.
 */
import { deepEqual, notEqual, throws } from "node:assert/strict";
import { ByteWriter } from "../../src/tls/codec/bytes.ts";

Deno.test("ByteWriter: results are independent copies, also for nested and successive writers", () => {
  const secret = new Uint8Array(300).fill(0xaa);
  const first = new ByteWriter(512).u8(1).opaque(2, secret).finish();
  const outer = new ByteWriter(512).u8(2);
  const inner = new ByteWriter().u16(0x0304).finish();
  const second = outer.opaque(1, inner).finish();
  deepEqual(first.subarray(0, 3), Uint8Array.of(1, 1, 44));
  deepEqual(inner, Uint8Array.of(3, 4));
  deepEqual(second, Uint8Array.of(2, 2, 3, 4));
  // A buffer handed on to the next writer held the 0xaa bytes: none of them shows.
  const third = new ByteWriter(512).vector(2, (w) => w.bytes(new Uint8Array(4))).finish();
  deepEqual(third, Uint8Array.of(0, 4, 0, 0, 0, 0));
  for (const a of [first, inner, second]) notEqual(a.buffer, third.buffer);
  first.fill(0);
  deepEqual(second, Uint8Array.of(2, 2, 3, 4));
});

Deno.test("ByteWriter: a finished writer is spent", () => {
  const writer = new ByteWriter().u8(1);
  writer.finish();
  throws(() => writer.finish(), TypeError);
  throws(() => writer.u8(2), TypeError);
});
