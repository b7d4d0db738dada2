/**
 * Small arrays carved from shared slabs (src/crypto/small_bytes.ts): each is zeroed and its own,
 * whatever is written to the others, across slab boundaries; larger requests and kept values get
 * memory of their own. And the libcrypto provider's outputs that come from slabs (digests,
 * MACs, HKDF, key agreement) stay intact while later ones are made.
 */
import { deepEqual, equal, notEqual, ok } from "node:assert/strict";
import { ownBytes, SLAB_BYTES, SMALL_BYTES_MAX, smallBytes } from "../../src/crypto/small_bytes.ts";
import { libcrypto, noble } from "./providers.ts";

Deno.test("smallBytes: zeroed arrays that never share a byte, across slabs", () => {
  const sizes = [1, 12, 32, 48, SMALL_BYTES_MAX, 7];
  const carved: Uint8Array[] = [];
  // Enough to fill several slabs, with sizes that do not divide SLAB_BYTES.
  for (let i = 0; carved.length < (4 * SLAB_BYTES) / 8; i++) {
    const bytes = smallBytes(sizes[i % sizes.length]);
    equal(bytes.length, sizes[i % sizes.length]);
    ok(bytes.every((b) => b === 0), `array ${i} is zeroed`);
    bytes.fill((i % 255) + 1);
    carved.push(bytes);
  }
  carved.forEach((bytes, i) => ok(bytes.every((b) => b === (i % 255) + 1), `array ${i} intact`));
  ok(new Set(carved.map((b) => b.buffer)).size > 1, "more than one slab was used");
  for (const bytes of carved) ok(bytes.byteOffset + bytes.length <= SLAB_BYTES);
});

Deno.test("smallBytes: larger requests and ownBytes get memory of their own", () => {
  const large = smallBytes(SMALL_BYTES_MAX + 1);
  equal(large.buffer.byteLength, SMALL_BYTES_MAX + 1);
  const small = smallBytes(16);
  small.fill(9);
  const own = ownBytes(small);
  deepEqual(own, small);
  equal(own.buffer.byteLength, 16);
  notEqual(own.buffer, small.buffer);
  small.fill(0);
  ok(own.every((b) => b === 9));
});

Deno.test("libcrypto: slab-carved outputs stay intact while later ones are made", async () => {
  const data = noble.randomBytes(100);
  const outputs: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i < 64; i++) {
    const input = data.subarray(0, i + 1);
    outputs.push([libcrypto.hashSync("SHA-384", input), noble.hashSync("SHA-384", input)]);
    outputs.push([
      libcrypto.hmacSync("SHA-256", data, input),
      await noble.hmac("SHA-256", data, input),
    ]);
    outputs.push([
      libcrypto.hkdfExpandSync("SHA-256", data.subarray(0, 32), input, 42),
      await noble.hkdfExpand("SHA-256", data.subarray(0, 32), input, 42),
    ]);
    const running = libcrypto.createHash("SHA-256").update(input);
    outputs.push([running.clone().digest(), noble.hashSync("SHA-256", input)]);
  }
  const x25519 = libcrypto.keyAgreement("X25519");
  const [a, b] = [await x25519.generateKeyPair(), await x25519.generateKeyPair()];
  const [ab, ba] = [
    await a.deriveSharedSecret(b.publicKey),
    await b.deriveSharedSecret(a.publicKey),
  ];
  outputs.push([ab, ba]);
  for (const [i, [got, want]] of outputs.entries()) deepEqual(got, want, `output ${i}`);
});
