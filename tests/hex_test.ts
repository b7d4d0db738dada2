/** Hexadecimal text and back (src/hex.ts): what fingerprints, constants and vectors are read with. */
import { deepEqual, equal, throws } from "node:assert/strict";
import { fromHex, toHex } from "../src/hex.ts";

Deno.test("hex: bytes and back, in either case, whitespace ignored", () => {
  const bytes = Uint8Array.of(0x00, 0x0f, 0xa5, 0xff);
  equal(toHex(bytes), "000fa5ff");
  deepEqual(fromHex("000fa5ff"), bytes);
  deepEqual(fromHex("00 0F\nA5 ff"), bytes);
  deepEqual(fromHex(""), new Uint8Array(0));
});

Deno.test("hex: what is not hexadecimal is refused, not read as something else", () => {
  // parseInt("0g", 16) is 0, and an odd length left the last digit out.
  for (const text of ["0g", "zz", "abc", "0x00", "-1"]) {
    throws(() => fromHex(text), TypeError, text);
  }
});
