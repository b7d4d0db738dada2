/**
 * The libcrypto provider at its FFI boundary: wrong lengths are refused with typed errors before
 * any call (never a crash), zero-length inputs are not mistaken for NULL, in-place and
 * overlapping buffers seal right, spent objects refuse reuse, OpenSSL's error queue does not
 * leak into later calls, and a million records through one key leave the heap and RSS flat.
 */
import { deepEqual, equal, notDeepEqual, ok, throws } from "node:assert/strict";
import {
  AeadAuthError,
  type AeadName,
  InvalidPrivateKeyError,
  InvalidPublicValueError,
  LibcryptoLengthError,
} from "../../src/crypto/index.ts";
import {
  checkCInt,
  checkFits,
  checkLength,
  loadLibcrypto,
  paramArray,
  utf8Param,
} from "../../src/crypto/libcrypto_ffi.ts";
import { libcrypto, noble } from "./providers.ts";
import { thrown } from "./vectors.ts";

const AEADS: [AeadName, number][] = [
  ["AES-128-GCM", 16],
  ["AES-256-GCM", 32],
  ["ChaCha20-Poly1305", 32],
];

Deno.test("libcrypto: loads OpenSSL 3.x and reports what it has", () => {
  const load = loadLibcrypto();
  ok(load.ok);
  ok(load.lib.version.startsWith("OpenSSL 3."), load.lib.version);
  // OpenSSL before 3.5 has neither; the provider then takes them from native.
  const is35 = /^OpenSSL 3\.([5-9]|\d\d)/.test(load.lib.version);
  equal(load.lib.hasMlKem, is35);
  equal(load.lib.hasMlDsa, is35);
});

Deno.test("libcrypto: the boundary checks are typed RangeErrors", () => {
  throws(() => checkLength("nonce", new Uint8Array(11), 12), LibcryptoLengthError);
  throws(() => checkFits("output", new Uint8Array(15), 16), RangeError);
  throws(() => checkCInt("length", 2 ** 31), LibcryptoLengthError);
  throws(() => checkCInt("length", -1), LibcryptoLengthError);
  throws(() => checkCInt("length", 1.5), LibcryptoLengthError);
  checkCInt("length", 2 ** 31 - 1);
  // An OSSL_PARAM array is 40 bytes per entry plus the terminator.
  equal(paramArray([utf8Param("digest", "SHA2-256")]).length, 80);
});

Deno.test("libcrypto: AEAD lengths are checked before any call", () => {
  for (const [name, keyLength] of AEADS) {
    throws(() => libcrypto.aeadSync(name, new Uint8Array(keyLength - 1)), RangeError);
    throws(() => libcrypto.aeadSync(name, new Uint8Array(keyLength + 1)), RangeError);
    const aead = libcrypto.aeadSync(name, new Uint8Array(keyLength));
    const aad = new Uint8Array(5);
    for (const nonceLength of [0, 8, 11, 13, 16]) {
      throws(() => aead.sealSync(new Uint8Array(nonceLength), new Uint8Array(4), aad), RangeError);
      throws(() => aead.openSync(new Uint8Array(nonceLength), new Uint8Array(20), aad), RangeError);
    }
    const nonce = new Uint8Array(12);
    for (const outLength of [0, 19, 21]) {
      throws(
        () => aead.sealIntoSync(nonce, [new Uint8Array(4)], aad, new Uint8Array(outLength)),
        RangeError,
      );
    }
    // Shorter than a tag: an authentication failure, as for any bad record.
    for (const length of [0, 1, 15]) {
      throws(() => aead.openSync(nonce, new Uint8Array(length), aad), AeadAuthError);
    }
    aead.dispose();
  }
});

Deno.test("libcrypto: peer values of the wrong length or form are InvalidPublicValueErrors", async () => {
  for (const [name, length] of [["X25519", 32], ["P-256", 65], ["P-384", 97]] as const) {
    const pair = await libcrypto.keyAgreement(name).generateKeyPair();
    for (const wrong of [0, 1, length - 1, length + 1, 2 * length]) {
      const peer = new Uint8Array(wrong).fill(4);
      const error = await thrown(() => pair.deriveSharedSecret(peer));
      ok(error instanceof InvalidPublicValueError, `${name} ${wrong} bytes: ${error}`);
    }
    for (const wrong of [0, length === 32 ? 31 : length - 2, 64]) {
      const error = await thrown(() =>
        libcrypto.keyAgreement(name).keyPairFromPrivateKey(new Uint8Array(wrong).fill(1))
      );
      ok(error instanceof InvalidPrivateKeyError, `${name} private ${wrong}: ${error}`);
    }
  }
  // A P-256 scalar equal to the group order, and one above it.
  const order = Uint8Array.from(
    "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551".match(/../g)!,
    (byte) => parseInt(byte, 16),
  );
  for (const scalar of [order, new Uint8Array(32).fill(0xff)]) {
    const error = await thrown(() => libcrypto.keyAgreement("P-256").keyPairFromPrivateKey(scalar));
    ok(error instanceof InvalidPrivateKeyError, String(error));
  }
});

Deno.test("libcrypto: caller lengths out of range are RangeErrors, not calls", async () => {
  throws(() => libcrypto.randomBytes(-1), RangeError);
  throws(() => libcrypto.randomBytes(2 ** 31), RangeError);
  equal(libcrypto.randomBytes(0).length, 0);
  equal(libcrypto.randomBytes(3 << 20).length, 3 << 20);
  throws(() => libcrypto.hkdfExpandSync("SHA-256", new Uint8Array(32), new Uint8Array(0), -1));
  ok(
    await thrown(() =>
      libcrypto.hkdfExpand("SHA-384", new Uint8Array(48), new Uint8Array(0), 255 * 48 + 1)
    ) instanceof RangeError,
  );
});

Deno.test("libcrypto: an empty HMAC key is the empty key, not the previous call's", () => {
  const data = new TextEncoder().encode("data");
  for (const hash of ["SHA-256", "SHA-384", "SHA-512"] as const) {
    const keyed = libcrypto.hmacSync(hash, new Uint8Array(40).fill(7), data);
    const empty = libcrypto.hmacSync(hash, new Uint8Array(0), data);
    notDeepEqual(empty, keyed);
    deepEqual(empty, noble.hmacSync(hash, new Uint8Array(0), data));
    // HMAC pads the key with zeros: the empty key and a block of zeros agree.
    deepEqual(empty, libcrypto.hmacSync(hash, new Uint8Array(hash === "SHA-256" ? 64 : 128), data));
    // Empty data, and a view at an offset of a larger buffer.
    deepEqual(libcrypto.hashSync(hash, new Uint8Array(0)), noble.hashSync(hash, new Uint8Array(0)));
    const big = noble.randomBytes(100);
    deepEqual(
      libcrypto.hashSync(hash, big.subarray(37, 61)),
      noble.hashSync(hash, big.subarray(37, 61)),
    );
  }
});

Deno.test("libcrypto: sealing in place and from overlapping parts", () => {
  for (const [name, keyLength] of AEADS) {
    const key = noble.randomBytes(keyLength);
    const aead = libcrypto.aeadSync(name, key);
    const reference = noble.aeadSync(name, key);
    const nonce = noble.randomBytes(12);
    const plaintext = noble.randomBytes(1000);
    const aad = Uint8Array.of(23, 3, 3, 0x03, 0xf9);
    const expected = reference.sealSync(nonce, plaintext, aad);

    // In place: the plaintext already sits where its ciphertext goes.
    const record = new Uint8Array(5 + plaintext.length + 16);
    record.set(aad);
    record.set(plaintext, 5);
    aead.sealIntoSync(
      nonce,
      [record.subarray(5, 5 + plaintext.length)],
      record.subarray(0, 5),
      record.subarray(5),
    );
    deepEqual(record.subarray(5), expected);

    // Overlapping but shifted by one byte: copied first, still right.
    const shifted = new Uint8Array(1 + plaintext.length + 16);
    shifted.set(plaintext, 0);
    aead.sealIntoSync(nonce, [shifted.subarray(0, plaintext.length)], aad, shifted.subarray(1));
    deepEqual(shifted.subarray(1), expected);

    // Empty parts among others, and nothing at all.
    const out = new Uint8Array(plaintext.length + 16);
    aead.sealIntoSync(
      nonce,
      [new Uint8Array(0), plaintext.subarray(0, 1), new Uint8Array(0), plaintext.subarray(1)],
      aad,
      out,
    );
    deepEqual(out, expected);
    deepEqual(
      aead.sealSync(nonce, new Uint8Array(0), aad),
      reference.sealSync(nonce, new Uint8Array(0), aad),
    );
    deepEqual(
      aead.openSync(
        nonce,
        reference.sealSync(nonce, new Uint8Array(0), new Uint8Array(0)),
        new Uint8Array(0),
      ),
      new Uint8Array(0),
    );
    aead.dispose();
  }
});

Deno.test("libcrypto: a failed open leaves nothing behind for the next record", () => {
  const key = noble.randomBytes(32);
  const aead = libcrypto.aeadSync("AES-256-GCM", key);
  const nonce = noble.randomBytes(12);
  const aad = new Uint8Array(5);
  const sealed = aead.sealSync(nonce, noble.randomBytes(100), aad);
  const forged = sealed.slice();
  forged[3] ^= 1;
  for (let i = 0; i < 3; i++) {
    throws(() => aead.openSync(nonce, forged, aad), AeadAuthError);
    equal(aead.openSync(nonce, sealed, aad).length, 100);
  }
});

Deno.test("libcrypto: spent objects refuse reuse", async () => {
  const aead = libcrypto.aeadSync("ChaCha20-Poly1305", new Uint8Array(32));
  const nonce = new Uint8Array(12);
  aead.sealSync(nonce, new Uint8Array(10), new Uint8Array(0));
  aead.dispose();
  aead.dispose();
  throws(() => aead.sealSync(nonce, new Uint8Array(10), new Uint8Array(0)), TypeError);
  throws(() => aead.openSync(nonce, new Uint8Array(26), new Uint8Array(0)), TypeError);
  ok(
    await thrown(() => aead.seal(nonce, new Uint8Array(1), new Uint8Array(0))) instanceof TypeError,
  );

  const hash = libcrypto.createHash("SHA-256").update(new Uint8Array(3));
  const fork = hash.clone();
  hash.digest();
  throws(() => hash.digest(), TypeError);
  throws(() => hash.update(new Uint8Array(1)), TypeError);
  deepEqual(fork.digest(), noble.hashSync("SHA-256", new Uint8Array(3)));
});

/** RSS and V8 heap in MiB. */
function memory() {
  const { rss, heapUsed } = Deno.memoryUsage();
  return { rss: rss / 2 ** 20, heap: heapUsed / 2 ** 20 };
}

Deno.test("libcrypto: 1M records through one key leave the heap and RSS flat", () => {
  const records = 1_000_000;
  const key = noble.randomBytes(32);
  const sealer = libcrypto.aeadSync("AES-256-GCM", key);
  const receiver = libcrypto.aeadSync("AES-256-GCM", key);
  const nonce = new Uint8Array(12);
  const nonceView = new DataView(nonce.buffer);
  const payload = noble.randomBytes(64);
  // Sealed in place into one record buffer, as a record layer does.
  const record = new Uint8Array(5 + payload.length + 16);
  record.set([23, 3, 3, 0, payload.length + 16]);
  const header = record.subarray(0, 5);
  const body = record.subarray(5);
  let baseline = memory();
  for (let i = 0; i < records; i++) {
    nonceView.setUint32(8, i);
    sealer.sealIntoSync(nonce, [payload], header, body);
    const opened = receiver.openSync(nonce, body, header);
    if (opened[0] !== payload[0] || opened.length !== payload.length) {
      throw new Error(`record ${i} did not round-trip`);
    }
    if (i === 100_000) baseline = memory();
  }
  const end = memory();
  // A context (or a buffer) kept per record would be ≥ 64 bytes × 900k = 55 MiB, native or not.
  ok(end.rss - baseline.rss < 24, `RSS grew ${(end.rss - baseline.rss).toFixed(1)} MiB`);
  ok(end.heap - baseline.heap < 24, `heap grew ${(end.heap - baseline.heap).toFixed(1)} MiB`);
  deepEqual(receiver.openSync(nonce, body, header), payload);
  sealer.dispose();
  receiver.dispose();
});

Deno.test("libcrypto: 100k traffic keys made and disposed leave RSS flat", () => {
  const nonce = new Uint8Array(12);
  const aad = new Uint8Array(5);
  const key = noble.randomBytes(32);
  let baseline = memory();
  for (let i = 0; i < 100_000; i++) {
    const aead = libcrypto.aeadSync("AES-256-GCM", key);
    aead.openSync(nonce, aead.sealSync(nonce, aad, aad), aad);
    aead.dispose();
    if (i === 10_000) baseline = memory();
  }
  const end = memory();
  // Two contexts of ≈1 KiB each per key: 90k leaked keys would be ≥ 170 MiB.
  ok(end.rss - baseline.rss < 32, `RSS grew ${(end.rss - baseline.rss).toFixed(1)} MiB`);
});

Deno.test("libcrypto: an ML-KEM key pair decapsulates more than once", async () => {
  // The first decapsulation uses (and frees) the key made with the pair, later ones rebuild it.
  const kem = libcrypto.kem("ML-KEM-768");
  const pair = await kem.generateKeyPair();
  for (let i = 0; i < 3; i++) {
    const { ciphertext, sharedSecret } = await noble.kem("ML-KEM-768").encapsulate(pair.publicKey);
    deepEqual(await pair.decapsulate(ciphertext), sharedSecret);
  }
});

Deno.test("libcrypto: keys never disposed are freed by the garbage collector (the backstop)", async () => {
  // In a process of its own, with gc() exposed: rounds of traffic keys and running hashes that
  // are dropped without dispose() or digest(). Freed, their memory is reused round after round;
  // leaked, RSS would grow by ≈2 KiB per key (two cipher contexts), 40 MiB a round.
  const program = `
    import { libcryptoProvider } from ${
    JSON.stringify(new URL("../../src/crypto/index.ts", import.meta.url).href)
  };
    const provider = libcryptoProvider();
    const nonce = new Uint8Array(12), aad = new Uint8Array(5), key = new Uint8Array(32);
    const rss = [];
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 20000; i++) {
        const aead = provider.aeadSync("AES-256-GCM", key);
        aead.openSync(nonce, aead.sealSync(nonce, aad, aad), aad);
        provider.createHash("SHA-384").update(aad).clone();
      }
      globalThis.gc();
      // FinalizationRegistry callbacks run as tasks after the collection.
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      rss.push(Deno.memoryUsage().rss / 2 ** 20);
    }
    console.log(JSON.stringify(rss));`;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(script, program);
  const root = new URL("../..", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--config=${root}deno.json`, "--v8-flags=--expose-gc", "-A", script],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => Deno.remove(script));
  const stderr = new TextDecoder().decode(output.stderr);
  equal(output.code, 0, stderr);
  const rss: number[] = JSON.parse(new TextDecoder().decode(output.stdout));
  const growth = rss[rss.length - 1] - rss[1];
  ok(growth < 40, `RSS by round (MiB): ${rss.map((value) => value.toFixed(0)).join(", ")}`);
});
