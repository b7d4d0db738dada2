/**
 * AES-GCM and ChaCha20-Poly1305 on every provider, async and sync (and opening into a given
 * buffer, zeroed when the tag fails), against Wycheproof. Only the groups TLS 1.3 can produce
 * are used: 96-bit nonces, 128-bit tags, AES-128/256 keys (the provider refuses other nonce
 * lengths with a RangeError, tested in peer_input_test.ts).
 */
import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { type Aead, AeadAuthError, type AeadName } from "../../src/crypto/index.ts";
import { ALL_PROVIDERS } from "./providers.ts";
import { hexField, label, thrown, wycheproof } from "./vectors.ts";

const FILES: {
  file: string;
  algorithm: (keyBits: number) => AeadName | undefined;
  expected: number;
}[] = [
  {
    file: "aes_gcm_test",
    algorithm: (bits) => bits === 128 ? "AES-128-GCM" : bits === 256 ? "AES-256-GCM" : undefined,
    expected: 133,
  },
  { file: "chacha20_poly1305_test", algorithm: () => "ChaCha20-Poly1305", expected: 316 },
];

for (const provider of ALL_PROVIDERS) {
  for (const { file, algorithm, expected } of FILES) {
    Deno.test(`${provider.name}: ${file} (Wycheproof)`, async () => {
      let checked = 0;
      for (const group of await wycheproof(file)) {
        const name = algorithm(group.keySize as number);
        if (!name || group.ivSize !== 96 || group.tagSize !== 128) continue;
        for (const test of group.tests) {
          const aead = await provider.aead(name, hexField(test, "key"));
          const aeadSync = provider.aeadSync(name, hexField(test, "key"));
          const [nonce, aad] = [hexField(test, "iv"), hexField(test, "aad")];
          const sealed = new Uint8Array([...hexField(test, "ct"), ...hexField(test, "tag")]);
          if (test.result === "valid") {
            const msg = hexField(test, "msg");
            deepEqual(await aead.seal(nonce, msg, aad), sealed, label(file, test));
            deepEqual(await aead.open(nonce, sealed, aad), msg, label(file, test));
            deepEqual(aead.sealSync(nonce, msg, aad), sealed, label(file, test));
            deepEqual(aeadSync.openSync(nonce, sealed, aad), msg, label(file, test));
            deepEqual(aeadSync.sealSync(nonce, msg, aad), sealed, label(file, test));
            const out = new Uint8Array(msg.length);
            aeadSync.openIntoSync(nonce, sealed, aad, out);
            deepEqual(out, msg, label(file, test));
          } else {
            const error = await thrown(() => aead.open(nonce, sealed, aad));
            ok(error instanceof AeadAuthError, label(file, test));
            throws(() => aeadSync.openSync(nonce, sealed, aad), AeadAuthError, label(file, test));
            // Nothing of a forged message is left where it was opened.
            const out = new Uint8Array(Math.max(0, sealed.length - 16)).fill(0xaa);
            throws(
              () => aeadSync.openIntoSync(nonce, sealed, aad, out),
              AeadAuthError,
              label(file, test),
            );
            ok(out.every((b) => b === 0), label(file, test));
          }
          aead.dispose();
          aeadSync.dispose();
          checked++;
        }
      }
      equal(checked, expected);
    });
  }
}

for (const provider of ALL_PROVIDERS) {
  Deno.test(`${provider.name}: sealInto writes what seal returns, into a larger buffer`, async () => {
    for (const name of ["AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"] as AeadName[]) {
      const aead = await provider.aead(
        name,
        provider.randomBytes(name === "AES-128-GCM" ? 16 : 32),
      );
      const nonce = provider.randomBytes(12);
      for (const size of [3000, 20000]) {
        await sealIntoRecord(aead, nonce, provider.randomBytes(size));
      }
    }
  });
}

/** Seals `payload` and a content-type byte into a TLS-record-like buffer; checks it. */
async function sealIntoRecord(aead: Aead, nonce: Uint8Array, payload: Uint8Array) {
  const trailer = Uint8Array.of(23);
  // As a TLS record: a 5-byte header (the AAD) in front, sealed at an odd offset after it.
  const record = new Uint8Array(5 + payload.length + 1 + aead.tagLength);
  record.set([23, 3, 3, (record.length - 5) >> 8, (record.length - 5) & 0xff]);
  const header = record.subarray(0, 5);
  await aead.sealInto(nonce, [payload, trailer], header, record.subarray(5));
  const expected = await aead.seal(nonce, new Uint8Array([...payload, 23]), header);
  deepEqual(record.subarray(5), expected);
  const again = record.slice();
  aead.sealIntoSync(nonce, [payload, trailer], again.subarray(0, 5), again.subarray(5));
  deepEqual(again, record);
  deepEqual(aead.openSync(nonce, record.subarray(5), header), new Uint8Array([...payload, 23]));
  deepEqual(
    await aead.open(nonce, record.subarray(5), header),
    new Uint8Array([...payload, 23]),
  );

  const opened = new Uint8Array(payload.length + 1);
  aead.openIntoSync(nonce, record.subarray(5), header, opened);
  deepEqual(opened, new Uint8Array([...payload, 23]));
  throws(
    () => aead.openIntoSync(nonce, record.subarray(5), header, opened.subarray(1)),
    RangeError,
  );

  const short = new Uint8Array(payload.length + aead.tagLength);
  const error = await thrown(() => aead.sealInto(nonce, [payload, trailer], header, short));
  ok(error instanceof RangeError, String(error));
  throws(() => aead.sealIntoSync(nonce, [payload, trailer], header, short), RangeError);
}
