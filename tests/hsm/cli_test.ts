/**
 * `qsign hsm slots|keys|keygen|csr` against a SoftHSM2 token of its own, cross-checked with
 * opensc's pkcs11-tool, @peculiar/x509 and the OpenSSL command line.
 */
import "reflect-metadata";
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import {
  Pkcs10CertificateRequest,
  SubjectAlternativeNameExtension,
  X509Certificate,
} from "@peculiar/x509";
import { pemDecodeAll } from "../../src/pki/pem.ts";
import { runQsign } from "../support/env.ts";
import { createTestToken, PIN, pkcs11ToolListObjects } from "./softhsm.ts";

const SAN_OID = "2.5.29.17";

interface KeyRow {
  class: string;
  label: string;
  id: string;
  type: string;
  sensitive?: boolean;
  extractable?: boolean;
  neverExtractable?: boolean;
}

/** pkcs11-tool's "Private Key Object" blocks: label, ID and the Access line. */
function pkcs11ToolPrivateKeys(listing: string): { label: string; id: string; access: string }[] {
  return listing.split(/\n(?=\S)/).filter((block) => block.startsWith("Private Key Object"))
    .map((block) => ({
      label: /label:\s+(.*)/.exec(block)![1].trim(),
      id: /ID:\s+(.*)/.exec(block)![1].trim(),
      access: /Access:\s+(.*)/.exec(block)![1].trim(),
    }));
}

async function opensslVerifiesCsr(path: string): Promise<boolean> {
  const out = await new Deno.Command("openssl", {
    args: ["req", "-in", path, "-verify", "-noout"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return out.success && new TextDecoder().decode(out.stderr).includes("verify OK");
}

Deno.test("qsign hsm on a SoftHSM2 token", async (t) => {
  await using token = await createTestToken("qsign-cli");
  const qsign = (...args: string[]) => runQsign(["hsm", ...args], { env: token.env });

  await t.step("slots lists the token, its flags, and no ML-DSA in SoftHSM2", async () => {
    const json = await qsign("slots", "--hsm-module", token.tokenArgs[1], "--json");
    equal(json.code, 0, json.stderr);
    const slot = JSON.parse(json.stdout).find((s: { token?: { label: string } }) =>
      s.token?.label === token.label
    );
    ok(slot, json.stdout);
    deepEqual(
      [slot.token.initialized, slot.token.loginRequired, slot.token.mlDsa],
      [true, true, false],
    );
    const table = await qsign("slots", "--hsm-module", token.tokenArgs[1]);
    equal(table.code, 0, table.stderr);
    ok(table.stdout.includes(`${slot.slot}  ${token.label}`), table.stdout);
  });

  await t.step("keygen makes EC P-384, EC P-256 and RSA-3072 key pairs", async () => {
    for (
      const [type, label, id] of [
        ["ec-p384", "server", "01"],
        ["ec-p256", "client", "02"],
        ["rsa-3072", "legacy", "0a0b"],
      ]
    ) {
      const r = await qsign(
        "keygen",
        ...token.loginArgs,
        "--type",
        type,
        "--label",
        label,
        "--id",
        id,
      );
      equal(r.code, 0, r.stderr);
      ok(r.stdout.includes(`"${label}" (CKA_ID ${id})`), r.stdout);
    }
  });

  await t.step(
    "keygen refuses a taken label and ML-DSA without CKM_ML_DSA_KEY_PAIR_GEN",
    async () => {
      const taken = await qsign("keygen", ...token.loginArgs, "--label", "server", "--id", "99");
      equal(taken.code, 1);
      ok(taken.stderr.includes('a key with label "server" already exists'), taken.stderr);
      const mldsa = await qsign(
        "keygen",
        ...token.loginArgs,
        "--type",
        "mldsa65",
        "--label",
        "pq",
        "--id",
        "05",
      );
      equal(mldsa.code, 1);
      ok(mldsa.stderr.includes("CKM_ML_DSA_KEY_PAIR_GEN (0x1c)"), mldsa.stderr);
    },
  );

  await t.step(
    "keys shows sensitive, never-extractable private keys; pkcs11-tool agrees",
    async () => {
      const r = await qsign("keys", ...token.loginArgs, "--json");
      equal(r.code, 0, r.stderr);
      const rows: KeyRow[] = JSON.parse(r.stdout);
      const privates = rows.filter((k) => k.class === "private");
      deepEqual(
        privates.map((k) => [k.label, k.id, k.type]),
        [["client", "02", "EC P-256"], ["legacy", "0a0b", "RSA 3072"], [
          "server",
          "01",
          "EC P-384",
        ]],
      );
      for (const k of privates) {
        deepEqual([k.sensitive, k.extractable, k.neverExtractable], [true, false, true], k.label);
      }
      equal(rows.filter((k) => k.class === "public").length, 3);

      const tool = pkcs11ToolPrivateKeys(await pkcs11ToolListObjects(token))
        .sort((a, b) => a.label.localeCompare(b.label));
      deepEqual(tool.map((k) => [k.label, k.id]), privates.map((k) => [k.label, k.id]));
      for (const k of tool) {
        ok(k.access.includes("sensitive"), k.access);
        ok(k.access.includes("never extractable"), k.access);
      }

      const table = await qsign("keys", ...token.loginArgs);
      ok(/private\s+server\s+01\s+EC P-384\s+yes\s+no\s+yes/.test(table.stdout), table.stdout);
    },
  );

  await t.step("keys without a PIN shows only public objects", async () => {
    const r = await qsign("keys", ...token.tokenArgs, "--json");
    equal(r.code, 0, r.stderr);
    const rows: KeyRow[] = JSON.parse(r.stdout);
    deepEqual([...new Set(rows.map((k) => k.class))], ["public"]);
    ok(r.stderr.includes("private keys are not shown"), r.stderr);
  });

  await t.step(
    "a wrong PIN is CKR_PIN_INCORRECT; a literal PIN warns; no PIN is echoed",
    async () => {
      const wrong = await runQsign(["hsm", "keys", ...token.tokenArgs, "--hsm-pin", "env:WRONG"], {
        env: { ...token.env, WRONG: "0000-wrong" },
      });
      equal(wrong.code, 1);
      ok(wrong.stderr.includes("C_Login failed"), wrong.stderr);
      ok(wrong.stderr.includes("CKR_PIN_INCORRECT"), wrong.stderr);
      ok(!wrong.stderr.includes("0000-wrong"));

      const literal = await qsign("keys", ...token.tokenArgs, "--hsm-pin", PIN);
      equal(literal.code, 0, literal.stderr);
      ok(literal.stderr.includes("visible to every user"), literal.stderr);
      ok(!literal.stderr.includes(PIN) && !literal.stdout.includes(PIN));
    },
  );

  await t.step(
    "csr: a PKCS#10 request signed in the token verifies (x509 and OpenSSL)",
    async () => {
      for (const [key, algorithm] of [["server", "ECDSA"], ["legacy", "RSA-PSS"]]) {
        const out = `${token.dir}/${key}.csr`;
        const r = await qsign(
          "csr",
          ...token.loginArgs,
          "--key-label",
          key,
          "--subject",
          `/C=KR/O=QSIGN/CN=${key}.qsign.local`,
          "--san",
          `${key}.qsign.local,127.0.0.1`,
          "--out",
          out,
        );
        equal(r.code, 0, r.stderr);
        const csr = new Pkcs10CertificateRequest(await Deno.readTextFile(out));
        equal(csr.subject, `C=KR, O=QSIGN, CN=${key}.qsign.local`);
        equal(csr.signatureAlgorithm.name, algorithm);
        ok(await csr.verify(), "the token's signature verifies");
        const san = new SubjectAlternativeNameExtension(
          csr.extensions.find((e) => e.type === SAN_OID)!.rawData,
        );
        deepEqual(
          san.names.items.map((n) => [n.type, n.value]),
          [["dns", `${key}.qsign.local`], ["ip", "127.0.0.1"]],
        );
        ok(await opensslVerifiesCsr(out), "openssl req -verify");
      }
    },
  );

  await t.step("csr's public key is the token's key", async () => {
    const csr = new Pkcs10CertificateRequest(await Deno.readTextFile(`${token.dir}/server.csr`));
    const publicBlock = (await pkcs11ToolListObjects(token)).split(/\n(?=\S)/)
      .find((block) => block.startsWith("Public Key Object") && /label:\s+server\n/.test(block))!;
    const point = /EC_POINT:\s+([0-9a-f]+)/.exec(publicBlock)![1];
    const spki = new Uint8Array(csr.publicKey.rawData);
    const raw = Array.from(spki.subarray(spki.length - 97), (b) => b.toString(16).padStart(2, "0"))
      .join("");
    ok(point.endsWith(raw), "the CSR carries the EC point pkcs11-tool shows");
  });

  await t.step("qsign pki issue --csr certifies the token key under the ML-DSA CA", async () => {
    const pki = `${token.dir}/pki`;
    const init = await runQsign(["pki", "init", "--dir", pki, "--alg", "mldsa65"]);
    equal(init.code, 0, init.stderr);
    const issue = await runQsign([
      "pki",
      "issue",
      "--dir",
      pki,
      "--profile",
      "server",
      "--cn",
      "server.qsign.local",
      "--csr",
      `${token.dir}/server.csr`,
      "--out",
      `${token.dir}/server`,
    ]);
    equal(issue.code, 0, issue.stderr);
    const [leaf] = pemDecodeAll(await Deno.readTextFile(`${token.dir}/server.crt`), "CERTIFICATE");
    const certificate = new X509Certificate(new Uint8Array(leaf));
    const csr = new Pkcs10CertificateRequest(await Deno.readTextFile(`${token.dir}/server.csr`));
    deepEqual(
      new Uint8Array(certificate.publicKey.rawData),
      new Uint8Array(csr.publicKey.rawData),
    );
    equal(certificate.signatureAlgorithm.name, "ML-DSA-65");
    await rejects(
      Deno.stat(`${token.dir}/server.key`),
      Deno.errors.NotFound,
      "no key file: it is in the token",
    );
  });
});
