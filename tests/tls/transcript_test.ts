/**
 * The running transcript hash against one-shot hashes of the concatenated messages, on both
 * crypto providers: at every point, with an extra tail (PSK binders), with a second hash started
 * late (a binder with the ticket's suite, then the suite the server chose), and after a
 * HelloRetryRequest. Also the key schedule's empty-string hashes.
 */
import { deepEqual } from "node:assert/strict";
import { nativeProvider, nobleProvider } from "../../src/crypto/index.ts";
import { CIPHER_SUITES } from "../../src/tls/cipher_suites.ts";
import { concat } from "../../src/tls/codec/bytes.ts";
import { messageHash } from "../../src/tls/codec/messages.ts";
import { emptyHash } from "../../src/tls/key_schedule.ts";
import { Transcript } from "../../src/tls/transcript.ts";
import { withCryptoSelection } from "../support/env.ts";

const [sha384Suite, sha256Suite] = CIPHER_SUITES;

for (const provider of [nativeProvider, nobleProvider]) {
  Deno.test(`${provider.name}: the running transcript hash equals hashing everything again`, async () => {
    await withCryptoSelection(provider.name, async () => {
      // Added one at a time, then two in one call (as a flight is).
      const [a, b, c, d, e] = [100, 5000, 1, 20000, 48].map((n) => provider.randomBytes(n));
      const steps = [[a], [b], [c, d], [e]];
      const transcript = new Transcript();
      const added: Uint8Array[] = [];
      const tail = provider.randomBytes(300);
      deepEqual(transcript.hash(sha384Suite), await provider.hash("SHA-384", new Uint8Array(0)));
      for (const step of steps) {
        transcript.add(...step);
        added.push(...step);
        deepEqual(transcript.hash(sha384Suite), await provider.hash("SHA-384", concat(...added)));
        deepEqual(
          transcript.hash(sha384Suite, tail),
          await provider.hash("SHA-384", concat(...added, tail)),
        );
      }
      // Another hash, first asked for now, covers the messages from the start.
      deepEqual(transcript.hash(sha256Suite), await provider.hash("SHA-256", concat(...added)));
    });
  });

  Deno.test(`${provider.name}: after a HelloRetryRequest, message_hash replaces ClientHello1`, async () => {
    await withCryptoSelection(provider.name, async () => {
      const [hello1, retry, hello2] = [700, 200, 800].map((n) => provider.randomBytes(n));
      const transcript = new Transcript();
      transcript.add(hello1);
      transcript.replaceWithMessageHash(sha256Suite);
      transcript.add(retry, hello2);
      const replaced = messageHash(await provider.hash("SHA-256", hello1));
      deepEqual(
        transcript.hash(sha256Suite),
        await provider.hash("SHA-256", concat(replaced, retry, hello2)),
      );
    });
  });
}

Deno.test("the key schedule's empty-string hashes are those of the empty string", async () => {
  for (const suite of CIPHER_SUITES) {
    deepEqual(emptyHash(suite), await nobleProvider.hash(suite.hash, new Uint8Array(0)));
    deepEqual(emptyHash(suite), await nativeProvider.hash(suite.hash, new Uint8Array(0)));
  }
});
