/** HKDF (Extract then Expand, as TLS 1.3 calls them) and HMAC on every provider, Wycheproof. */
import { deepEqual, equal, notDeepEqual, ok } from "node:assert/strict";
import type { HashName } from "../../src/crypto/index.ts";
import { ALL_PROVIDERS } from "./providers.ts";
import { hexField, label, thrown, wycheproofTests } from "./vectors.ts";

const HASHES: [string, HashName][] = [["sha256", "SHA-256"], ["sha384", "SHA-384"]];

for (const provider of ALL_PROVIDERS) {
  for (const [suffix, hash] of HASHES) {
    Deno.test(`${provider.name}: HKDF-${hash} (Wycheproof)`, async () => {
      const file = `hkdf_${suffix}_test`;
      for (const { test } of await wycheproofTests(file)) {
        const prk = await provider.hkdfExtract(hash, hexField(test, "salt"), hexField(test, "ikm"));
        const expand = () =>
          provider.hkdfExpand(hash, prk, hexField(test, "info"), test.size as number);
        if (test.result === "valid") {
          deepEqual(await expand(), hexField(test, "okm"), label(file, test));
        } else {
          // Longer than 255 hash blocks (RFC 5869 §2.3).
          ok(await thrown(expand) instanceof RangeError, label(file, test));
        }
      }
    });

    Deno.test(`${provider.name}: HMAC-${hash} (Wycheproof)`, async () => {
      const file = `hmac_${suffix}_test`;
      for (const { group, test } of await wycheproofTests(file)) {
        const mac = await provider.hmac(hash, hexField(test, "key"), hexField(test, "msg"));
        // Some groups test truncated tags: compare the leading tagSize bits.
        const truncated = mac.subarray(0, (group.tagSize as number) / 8);
        const expected = hexField(test, "tag");
        if (test.result === "valid") deepEqual(truncated, expected, label(file, test));
        else notDeepEqual(truncated, expected, label(file, test));
      }
    });
  }

  Deno.test(`${provider.name}: HKDF-Expand output lengths around block boundaries`, async () => {
    const prk = new Uint8Array(48).fill(7);
    const info = new TextEncoder().encode("tls13 key");
    const full = await provider.hkdfExpand("SHA-384", prk, info, 48 * 3);
    for (const length of [0, 1, 47, 48, 49, 96, 97]) {
      const okm = await provider.hkdfExpand("SHA-384", prk, info, length);
      equal(okm.length, length);
      deepEqual(okm, full.subarray(0, length));
    }
  });
}
