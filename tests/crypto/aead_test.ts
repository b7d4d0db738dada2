/**
 * AES-GCM and ChaCha20-Poly1305 on both providers against Wycheproof. Only the groups TLS 1.3
 * can produce are used: 96-bit nonces, 128-bit tags, AES-128/256 keys (the provider refuses
 * other nonce lengths with a RangeError, tested in peer_input_test.ts).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { AeadAuthError, type AeadName } from "../../src/crypto/index.ts";
import { hexField, label, PROVIDERS, thrown, wycheproof } from "./vectors.ts";

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

for (const provider of PROVIDERS) {
  for (const { file, algorithm, expected } of FILES) {
    Deno.test(`${provider.name}: ${file} (Wycheproof)`, async () => {
      let checked = 0;
      for (const group of await wycheproof(file)) {
        const name = algorithm(group.keySize as number);
        if (!name || group.ivSize !== 96 || group.tagSize !== 128) continue;
        for (const test of group.tests) {
          const aead = await provider.aead(name, hexField(test, "key"));
          const [nonce, aad] = [hexField(test, "iv"), hexField(test, "aad")];
          const sealed = new Uint8Array([...hexField(test, "ct"), ...hexField(test, "tag")]);
          if (test.result === "valid") {
            deepEqual(
              await aead.seal(nonce, hexField(test, "msg"), aad),
              sealed,
              label(file, test),
            );
            deepEqual(
              await aead.open(nonce, sealed, aad),
              hexField(test, "msg"),
              label(file, test),
            );
          } else {
            const error = await thrown(() => aead.open(nonce, sealed, aad));
            ok(error instanceof AeadAuthError, label(file, test));
          }
          checked++;
        }
      }
      equal(checked, expected);
    });
  }
}
