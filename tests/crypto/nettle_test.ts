/**
 * Nettle's P-384 at the FFI boundary (src/crypto/nettle.ts): every limb GMP allocates for an
 * operation is freed before it returns, and no freed block holds a limb of the private scalar or
 * of the shared secret (GMP frees without clearing: the provider zeroes them first). A process of
 * its own routes GMP's allocator, which Nettle's limbs come from too, through functions that count
 * the blocks and read each one as it is freed. Wycheproof and the peer-input cases run in ecdh_test.ts and
 * peer_input_test.ts, on Nettle's P-384 and the others alike.
 */
import { deepEqual, equal } from "node:assert/strict";

const program = (nettleUrl: string, randomUrl: string) => `
  import { loadNettle, nettleP384 } from ${JSON.stringify(nettleUrl)};
  import { nobleProvider } from ${JSON.stringify(randomUrl)};
  const libc = Deno.dlopen("libc.so.6", {
    malloc: { parameters: ["usize"], result: "pointer" },
    realloc: { parameters: ["pointer", "usize"], result: "pointer" },
    free: { parameters: ["pointer"], result: "void" },
  }).symbols;
  const gmp = Deno.dlopen("libgmp.so.10", {
    __gmp_set_memory_functions: { parameters: ["pointer", "pointer", "pointer"], result: "void" },
  }).symbols;
  const live = new Map();
  let allocations = 0;
  /** A copy of every block as it was freed; checked against the secrets once all are known. */
  const freed = [];
  /** The 64-bit limbs (GMP's little-endian words) of every scalar and shared secret. */
  const secretLimbs = new Set();
  const remember = (bigEndian) => {
    const words = new DataView(bigEndian.slice().reverse().buffer);
    for (let at = 0; at < bigEndian.length; at += 8) secretLimbs.add(words.getBigUint64(at, true));
  };
  const allocate = new Deno.UnsafeCallback({ parameters: ["usize"], result: "pointer" }, (size) => {
    const pointer = libc.malloc(size);
    live.set(Deno.UnsafePointer.value(pointer), Number(size));
    allocations++;
    return pointer;
  });
  const reallocate = new Deno.UnsafeCallback(
    { parameters: ["pointer", "usize", "usize"], result: "pointer" },
    (old, _oldSize, size) => {
      live.delete(Deno.UnsafePointer.value(old));
      const pointer = libc.realloc(old, size);
      live.set(Deno.UnsafePointer.value(pointer), Number(size));
      return pointer;
    },
  );
  const release = new Deno.UnsafeCallback({ parameters: ["pointer", "usize"], result: "void" },
    (pointer, size) => {
      const known = live.get(Deno.UnsafePointer.value(pointer));
      live.delete(Deno.UnsafePointer.value(pointer));
      if (known !== undefined) {
        freed.push(new BigUint64Array(Deno.UnsafePointerView.getArrayBuffer(pointer, known - (known % 8)).slice(0)));
      }
      libc.free(pointer);
    });
  const load = loadNettle();
  if (!load.ok) throw new Error(load.reason);
  gmp.__gmp_set_memory_functions(allocate.pointer, reallocate.pointer, release.pointer);
  const p384 = nettleP384(load.lib, (n) => nobleProvider.randomBytes(n));
  const peer = await nobleProvider.keyAgreement("P-384").generateKeyPair();
  let agreed = 0;
  for (let i = 0; i < 50; i++) {
    await p384.generateKeyPair();
    const scalar = nobleProvider.randomBytes(48);
    scalar[0] = 0x7f; // below n
    remember(scalar);
    const pair = await p384.keyPairFromPrivateKey(scalar);
    const ours = await pair.deriveSharedSecret(peer.publicKey);
    remember(ours);
    const theirs = await peer.deriveSharedSecret(pair.publicKey);
    if (ours.every((b, j) => b === theirs[j])) agreed++;
    try {
      const bad = pair.publicKey.slice();
      bad[96] ^= 1;
      await pair.deriveSharedSecret(bad);
    } catch {
      // refused, as it must be; its objects must be freed all the same
    }
  }
  gmp.__gmp_set_memory_functions(null, null, null);
  const secretFrees = freed.filter((block) => block.some((word) => secretLimbs.has(word))).length;
  console.log(JSON.stringify({ agreed, allocations, outstanding: live.size, secretFrees }));
`;

Deno.test("nettle: P-384 frees every limb it allocates, no secret in them, also on refusal", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    program(
      new URL("../../src/crypto/nettle.ts", import.meta.url).href,
      new URL("../../src/crypto/index.ts", import.meta.url).href,
    ),
  );
  const root = new URL("../..", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--config=${root}deno.json`, "-A", script],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => Deno.remove(script));
  equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const report = JSON.parse(new TextDecoder().decode(output.stdout));
  // 100 pairs, 50 agreements, 50 refused points: each allocates several blocks.
  equal(report.agreed, 50);
  equal(report.allocations > 500, true, `only ${report.allocations} allocations counted`);
  deepEqual({ outstanding: report.outstanding, secretFrees: report.secretFrees }, {
    outstanding: 0,
    secretFrees: 0,
  });
});
