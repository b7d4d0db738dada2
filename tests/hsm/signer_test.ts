/**
 * Pkcs11Signer on SoftHSM2: TLS signatures made in the token verify with WebCrypto, and mistakes
 * get HsmErrors that say what is wrong. (Concurrent handshakes through the pool are proven
 * against `qsign serve --hsm` in tests/daemon/hsm_serve_test.ts.)
 */
import { equal, ok, rejects } from "node:assert/strict";
import { ecdsaDerToRaw } from "../../src/crypto/der.ts";
import { HsmError } from "../../src/hsm/module.ts";
import { openHsmSigner, type OpenHsmSignerOptions } from "../../src/hsm/signer.ts";
import { createTestToken, generateKeys, MODULE, PIN } from "./softhsm.ts";

const ECDSA_P256_SHA256 = 0x0403;
const ECDSA_P384_SHA384 = 0x0503;
const RSA_PSS_RSAE_SHA256 = 0x0804;
const RSA_PSS_RSAE_SHA384 = 0x0805;
const RSA_PSS_RSAE_SHA512 = 0x0806;
const MLDSA65 = 0x0905;

const message = new TextEncoder().encode("TLS 1.3, server CertificateVerify\0transcript hash");

async function verifyEcdsa(
  spki: Uint8Array,
  namedCurve: "P-256" | "P-384",
  der: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  const key = await crypto.subtle.importKey(
    "spki",
    new Uint8Array(spki),
    {
      name: "ECDSA",
      namedCurve,
    },
    false,
    ["verify"],
  );
  const size = namedCurve === "P-256" ? 32 : 48;
  return await crypto.subtle.verify(
    { name: "ECDSA", hash: namedCurve === "P-256" ? "SHA-256" : "SHA-384" },
    key,
    new Uint8Array(ecdsaDerToRaw(der, size)),
    new Uint8Array(data),
  );
}

Deno.test("Pkcs11Signer signs inside SoftHSM2 and WebCrypto verifies", async (t) => {
  await using token = await createTestToken("signer");
  await generateKeys(token, [
    { type: "ec-p384", label: "server", id: "01" },
    { type: "rsa-3072", label: "legacy", id: "02" },
    { type: "ec-p256", label: "client", id: "03" },
  ]);
  const base: OpenHsmSignerOptions = {
    module: MODULE,
    token: token.label,
    pin: "env:QSIGN_TEST_PIN",
    healthCheckIntervalMs: 0,
  };

  await t.step("ECDSA P-384: DER signature over SHA-384, verified by WebCrypto", async () => {
    const hsm = await openHsmSigner({ ...base, keyLabel: "server" });
    try {
      equal(hsm.signer.schemes.join(), String(ECDSA_P384_SHA384));
      ok(hsm.signer.description.startsWith("pkcs11:token=signer;object=server;id=%01"));
      const spki = await hsm.signer.publicKeySpki();
      const signature = await hsm.signer.sign(ECDSA_P384_SHA384, message);
      equal(signature[0], 0x30, "TLS carries ECDSA signatures as DER");
      ok(await verifyEcdsa(spki, "P-384", signature, message));
      ok(!await verifyEcdsa(spki, "P-384", signature, message.subarray(1)));
    } finally {
      await hsm.close();
    }
  });

  await t.step("ECDSA P-256 selected by CKA_ID", async () => {
    const hsm = await openHsmSigner({ ...base, keyId: "03" });
    try {
      equal(hsm.signer.schemes.join(), String(ECDSA_P256_SHA256));
      const signature = await hsm.signer.sign(ECDSA_P256_SHA256, message);
      ok(await verifyEcdsa(await hsm.signer.publicKeySpki(), "P-256", signature, message));
    } finally {
      await hsm.close();
    }
  });

  await t.step("RSA-PSS rsae SHA-256, SHA-384 and SHA-512 with salt = hash length", async () => {
    const hsm = await openHsmSigner({ ...base, keyLabel: "legacy" });
    try {
      equal(
        hsm.signer.schemes.join(),
        [RSA_PSS_RSAE_SHA256, RSA_PSS_RSAE_SHA384, RSA_PSS_RSAE_SHA512].join(),
      );
      const spki = new Uint8Array(await hsm.signer.publicKeySpki());
      for (
        const [scheme, hash, saltLength] of [
          [RSA_PSS_RSAE_SHA256, "SHA-256", 32],
          [RSA_PSS_RSAE_SHA384, "SHA-384", 48],
          [RSA_PSS_RSAE_SHA512, "SHA-512", 64],
        ] as const
      ) {
        const key = await crypto.subtle.importKey("spki", spki, { name: "RSA-PSS", hash }, false, [
          "verify",
        ]);
        const signature = await hsm.signer.sign(scheme, message);
        equal(signature.length, 384);
        ok(
          await crypto.subtle.verify(
            { name: "RSA-PSS", saltLength },
            key,
            new Uint8Array(signature),
            message,
          ),
        );
      }
    } finally {
      await hsm.close();
    }
  });

  await t.step("two keys on one token share the module and its login", async () => {
    const server = await openHsmSigner({ ...base, keyLabel: "server", sessions: 2 });
    const client = await openHsmSigner({ ...base, keyLabel: "client", sessions: 2 });
    try {
      await server.close();
      const signature = await client.signer.sign(ECDSA_P256_SHA256, message);
      ok(await verifyEcdsa(await client.signer.publicKeySpki(), "P-256", signature, message));
    } finally {
      await server.close();
      await client.close();
    }
  });

  await t.step("schemes the key cannot make are refused, ML-DSA contexts too", async () => {
    const hsm = await openHsmSigner({ ...base, keyLabel: "server", sessions: 1 });
    try {
      await rejects(hsm.signer.sign(MLDSA65, message), (e: unknown) => {
        ok(e instanceof HsmError);
        ok(e.message.includes("mldsa65"), e.message);
        ok(e.message.includes("ecdsa_secp384r1_sha384"), e.message);
        return true;
      });
      await rejects(
        hsm.signer.signMlDsa(message, new Uint8Array(0)),
        /not an ML-DSA key/,
      );
    } finally {
      await hsm.close();
    }
  });

  await t.step(
    "PIN sources: file:// works, a literal PIN warns, a wrong one names the CKR",
    async () => {
      const pinFile = `${token.dir}/pin`;
      await Deno.writeTextFile(pinFile, `${PIN}\n`);
      const fromFile = await openHsmSigner({
        ...base,
        pin: `file://${pinFile}`,
        keyLabel: "server",
      });
      await fromFile.close();

      const warnings: string[] = [];
      const literal = await openHsmSigner({
        ...base,
        pin: PIN,
        keyLabel: "server",
        warn: (w) => warnings.push(w),
      });
      await literal.close();
      equal(warnings.length, 1);
      ok(warnings[0].includes("visible to every user"), warnings[0]);
      ok(!warnings[0].includes(PIN), "the warning does not repeat the PIN");

      await rejects(
        openHsmSigner({ ...base, pin: "0000-wrong", keyLabel: "server", warn: () => {} }),
        (e: unknown) => {
          ok(e instanceof HsmError);
          equal(e.code, "CKR_PIN_INCORRECT");
          equal(e.operation, "C_Login");
          equal(e.token, token.label);
          ok(!e.message.includes("0000-wrong"));
          return true;
        },
      );
    },
  );

  await t.step("a missing key or token is named in the error", async () => {
    await rejects(openHsmSigner({ ...base, keyLabel: "nope" }), (e: unknown) => {
      ok(e instanceof HsmError);
      equal(e.operation, "find key");
      ok(e.message.includes('no private key with label "nope"'), e.message);
      return true;
    });
    await rejects(openHsmSigner({ ...base, token: "absent", keyLabel: "server" }), (e: unknown) => {
      ok(e instanceof HsmError);
      ok(e.message.includes('no initialised token "absent"; present: "signer"'), e.message);
      return true;
    });
  });
});
