/**
 * ML-DSA known answers on every provider: ACVP keyGen (seed → public key), Wycheproof verify
 * (valid, invalid, wrong key lengths, context strings) and Wycheproof sign-from-seed.
 *
 * Signing is hedged (FIPS 204's default; the provider offers no deterministic mode), so a sign
 * vector is checked as: the public key we derive from its seed is the vector's, the vector's
 * signature verifies, and our own signature over the same message and context verifies on both
 * providers. Contexts go through the native provider too: it hands them to noble (Deno refuses
 * non-empty contexts). Not used: vectors on the internal interface (ACVP sigGen/sigVer on M',
 * Wycheproof "external mu" tests) and the noseed files (expanded private keys, which qsign never
 * imports).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import {
  InvalidPrivateKeyError,
  InvalidPublicValueError,
  type SignatureAlgorithmName,
} from "../../src/crypto/index.ts";
import { encodePkcs8, encodeSpki } from "../../src/crypto/keys.ts";
import { ML_DSA_PROVIDERS, providerLabel } from "./providers.ts";
import { acvp, hexField, label, thrown, wycheproofTests } from "./vectors.ts";

const SETS = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"] as const;
const fileName = (name: string, kind: string) => `mldsa_${name.slice(-2)}_${kind}_test`;

for (const provider of ML_DSA_PROVIDERS) {
  Deno.test(`${providerLabel(provider)}: ML-DSA keyGen from seed (ACVP)`, async () => {
    for (const group of await acvp("ML-DSA-keyGen-FIPS204")) {
      const name = group.parameterSet as (typeof SETS)[number];
      for (const test of group.tests) {
        const key = await provider.signature(name).importPrivateKey(
          encodePkcs8(name, hexField(test, "seed")),
        );
        deepEqual(
          key.publicKeySpki,
          encodeSpki(name, hexField(test, "pk")),
          `ACVP keyGen tcId ${test.tcId}`,
        );
      }
    }
  });

  for (const name of SETS) {
    Deno.test(`${providerLabel(provider)}: ${name} verify (Wycheproof)`, async () => {
      const file = fileName(name, "verify");
      const algorithm = provider.signature(name);
      let accepted = 0;
      for (const { group, test } of await wycheproofTests(file)) {
        const spki = encodeSpki(name, hexField(group, "publicKey"));
        const verify = () =>
          algorithm.verify(spki, hexField(test, "msg"), hexField(test, "sig"), {
            context: test.ctx === undefined ? undefined : hexField(test, "ctx"),
          });
        if (test.result === "valid") {
          equal(await verify(), true, label(file, test));
          accepted++;
        } else if (test.flags.includes("IncorrectPublicKeyLength")) {
          ok(await thrown(verify) instanceof InvalidPublicValueError, label(file, test));
        } else {
          equal(await verify(), false, label(file, test));
        }
      }
      ok(accepted > 50);
    });

    Deno.test(`${providerLabel(provider)}: ${name} sign from seed (Wycheproof)`, async () => {
      const file = fileName(name, "sign_seed");
      const algorithm = provider.signature(name);
      // Verified by another implementation of ML-DSA.
      const otherAlgorithm = ML_DSA_PROVIDERS.find((other) =>
        other.primitives["ML-DSA"] !== provider.primitives["ML-DSA"]
      )!.signature(name);
      let signed = 0;
      for (const { group, test } of await wycheproofTests(file)) {
        if (test.msg === undefined) continue; // external-mu (internal interface) vectors
        const pkcs8 = group.privateKeyPkcs8
          ? hexField(group, "privateKeyPkcs8")
          : encodePkcs8(name, hexField(group, "privateSeed"));
        const message = hexField(test, "msg");
        const options = { context: test.ctx === undefined ? undefined : hexField(test, "ctx") };
        if (test.flags.includes("IncorrectPrivateKeyLength")) {
          ok(
            await thrown(() => algorithm.importPrivateKey(pkcs8)) instanceof InvalidPrivateKeyError,
            label(file, test),
          );
          continue;
        }
        const key = await algorithm.importPrivateKey(pkcs8);
        deepEqual(key.publicKeySpki, encodeSpki(name, hexField(group, "publicKey")));
        if (test.result === "invalid") {
          // A context over 255 bytes: FIPS 204 signing refuses it.
          ok(test.flags.includes("InvalidContext"), label(file, test));
          ok(await thrown(() => algorithm.sign(key, message, options)) instanceof RangeError);
          continue;
        }
        const expected = hexField(test, "sig");
        equal(await algorithm.verify(key.publicKeySpki, message, expected, options), true);
        const signature = await algorithm.sign(key, message, options);
        equal(
          await otherAlgorithm.verify(key.publicKeySpki, message, signature, options),
          true,
          label(file, test),
        );
        signed++;
      }
      ok(signed > 40);
    });
  }
}

Deno.test("ML-DSA: a context changes what verifies, on every provider", async () => {
  const name: SignatureAlgorithmName = "ML-DSA-65";
  const message = new TextEncoder().encode("composite");
  const context = new TextEncoder().encode("COMPSIG-MLDSA65-ECDSA-P384-SHA512");
  for (const signer of ML_DSA_PROVIDERS) {
    const { privateKey, publicKeySpki } = await signer.signature(name).generateKeyPair();
    const signature = await signer.signature(name).sign(privateKey, message, { context });
    for (const verifier of ML_DSA_PROVIDERS) {
      const algorithm = verifier.signature(name);
      equal(await algorithm.verify(publicKeySpki, message, signature, { context }), true);
      equal(await algorithm.verify(publicKeySpki, message, signature), false);
      equal(
        await algorithm.verify(publicKeySpki, message, signature, { context: context.slice(1) }),
        false,
      );
    }
  }
});
