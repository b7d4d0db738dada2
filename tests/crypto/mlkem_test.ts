/**
 * ML-KEM known answers on every provider: Wycheproof (keygen from seed, decapsulation including
 * implicit rejection and wrong lengths, encapsulation-key validation) and the ACVP keyGen set.
 *
 * Not used, because the provider interface does not take their inputs: ACVP encapDecap and
 * Wycheproof's semi-expanded decaps files (expanded decapsulation keys, and encapsulation driven
 * by a fixed m), Wycheproof's valid encaps vectors' K (it needs that m; we check acceptance only).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { InvalidPublicValueError, type KemName } from "../../src/crypto/index.ts";
import { ALL_PROVIDERS } from "./providers.ts";
import { acvp, hexField, label, thrown, toHex, wycheproofTests } from "./vectors.ts";

const WYCHEPROOF_SETS = [["768", "ML-KEM-768"], ["1024", "ML-KEM-1024"]] as const;

for (const provider of ALL_PROVIDERS) {
  for (const [size, name] of WYCHEPROOF_SETS) {
    Deno.test(`${provider.name}: ${name} keygen from seed (Wycheproof)`, async () => {
      const file = `mlkem_${size}_keygen_seed_test`;
      for (const { test } of await wycheproofTests(file)) {
        const pair = await provider.kem(name).keyPairFromSeed(hexField(test, "seed"));
        equal(toHex(pair.publicKey), test.ek, label(file, test));
      }
    });

    Deno.test(`${provider.name}: ${name} decapsulation (Wycheproof)`, async () => {
      const file = `mlkem_${size}_test`;
      const kem = provider.kem(name);
      let decapsulated = 0;
      for (const { test } of await wycheproofTests(file)) {
        const seed = hexField(test, "seed");
        const ciphertext = hexField(test, "c");
        if (test.result === "valid") {
          const pair = await kem.keyPairFromSeed(seed);
          equal(toHex(pair.publicKey), test.ek, label(file, test));
          equal(toHex(await pair.decapsulate(ciphertext)), test.K, label(file, test));
          decapsulated++;
        } else if (seed.length !== 64) {
          const error = await thrown(() => kem.keyPairFromSeed(seed));
          ok(error instanceof RangeError, label(file, test));
        } else {
          // The remaining invalid vectors carry ciphertexts of the wrong length.
          const pair = await kem.keyPairFromSeed(seed);
          const error = await thrown(() => pair.decapsulate(ciphertext));
          ok(error instanceof InvalidPublicValueError, label(file, test));
        }
      }
      ok(decapsulated > 100);
    });

    Deno.test(`${provider.name}: ${name} encapsulation key checks (Wycheproof)`, async () => {
      const file = `mlkem_${size}_encaps_test`;
      const kem = provider.kem(name);
      for (const { test } of await wycheproofTests(file)) {
        const publicKey = hexField(test, "ek");
        if (test.result === "valid") {
          const { ciphertext, sharedSecret } = await kem.encapsulate(publicKey);
          equal(ciphertext.length, kem.ciphertextLength, label(file, test));
          equal(sharedSecret.length, 32, label(file, test));
        } else {
          // Unreduced coefficients (the FIPS 203 modulus check) and wrong lengths.
          const error = await thrown(() => kem.encapsulate(publicKey));
          ok(error instanceof InvalidPublicValueError, label(file, test));
        }
      }
    });
  }

  Deno.test(`${provider.name}: ML-KEM keyGen from (d, z) (ACVP)`, async () => {
    for (const group of await acvp("ML-KEM-keyGen-FIPS203")) {
      const kem = provider.kem(group.parameterSet as KemName);
      for (const test of group.tests) {
        const seed = new Uint8Array([...hexField(test, "d"), ...hexField(test, "z")]);
        const pair = await kem.keyPairFromSeed(seed);
        deepEqual(pair.publicKey, hexField(test, "ek"), `ACVP keyGen tcId ${test.tcId}`);
      }
    }
  });
}
