/**
 * `qsign hsm slots|keys|keygen|csr` against a SoftHSM2 token of its own, cross-checked with
 * @peculiar/x509 and the OpenSSL command line. (The production flow these commands start, and
 * the keys' attributes against pkcs11-tool, are proven in tests/daemon/hsm_serve_test.ts.)
 */
import "reflect-metadata";
import { deepEqual, equal, ok } from "node:assert/strict";
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension } from "@peculiar/x509";
import { pemEncode } from "../../src/pki/pem.ts";
import { runQsign } from "../support/env.ts";
import { createTestToken, PIN } from "./softhsm.ts";

const SAN_OID = "2.5.29.17";

interface KeyRow {
  class: string;
  label: string;
  id: string;
  type: string;
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

  await t.step("composite keys: only EC P-384 with an ML-DSA-65 file, no overwrite", async () => {
    const mldsaFile = `${token.dir}/taken-mldsa.key`;
    await Deno.writeTextFile(mldsaFile, "an existing key\n");
    const p256 = await qsign(
      "keygen",
      ...token.loginArgs,
      "--type",
      "ec-p256",
      "--label",
      "c1",
      "--composite-mldsa-key",
      `${token.dir}/new.key`,
    );
    equal(p256.code, 2);
    ok(p256.stderr.includes("--composite-mldsa-key goes with --type ec-p384"), p256.stderr);
    const taken = await qsign(
      "keygen",
      ...token.loginArgs,
      "--label",
      "c2",
      "--composite-mldsa-key",
      mldsaFile,
    );
    equal(taken.code, 2);
    ok(taken.stderr.includes(`${mldsaFile}: already exists`), taken.stderr);
    equal(await Deno.readTextFile(mldsaFile), "an existing key\n");

    const ecFile = `${token.dir}/ec.key`;
    const ec = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
      "sign",
    ]);
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", ec.privateKey));
    await Deno.writeTextFile(ecFile, pemEncode("PRIVATE KEY", pkcs8));
    const csr = (key: string, file: string) =>
      qsign(
        "csr",
        ...token.loginArgs,
        "--key-label",
        key,
        "--subject",
        "/CN=composite",
        "--composite-mldsa-key",
        file,
        "--out",
        `${token.dir}/composite.csr`,
      );
    const wrongToken = await csr("client", ecFile);
    equal(wrongToken.code, 1);
    ok(wrongToken.stderr.includes("must be an EC P-384 key"), wrongToken.stderr);
    const wrongFile = await csr("server", ecFile);
    equal(wrongFile.code, 2);
    ok(wrongFile.stderr.includes("must be ML-DSA-65"), wrongFile.stderr);
  });

  await t.step("keys lists both halves of each pair with type and protection flags", async () => {
    const r = await qsign("keys", ...token.loginArgs, "--json");
    equal(r.code, 0, r.stderr);
    const rows: KeyRow[] = JSON.parse(r.stdout);
    deepEqual(
      rows.map((k) => [k.class, k.label, k.id, k.type]),
      [
        ["private", "client", "02", "EC P-256"],
        ["public", "client", "02", "EC P-256"],
        ["private", "legacy", "0a0b", "RSA 3072"],
        ["public", "legacy", "0a0b", "RSA 3072"],
        ["private", "server", "01", "EC P-384"],
        ["public", "server", "01", "EC P-384"],
      ],
    );
    const table = await qsign("keys", ...token.loginArgs);
    ok(/private\s+server\s+01\s+EC P-384\s+yes\s+no\s+yes/.test(table.stdout), table.stdout);
    ok(/public\s+server\s+01\s+EC P-384\s+-\s+-\s+-/.test(table.stdout), table.stdout);
  });

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
});

Deno.test("hsm keygen leaves no orphan pair when its file cannot be written; hsm delete", async () => {
  await using token = await createTestToken("qsign-delete");
  const qsign = (...args: string[]) => runQsign(["hsm", ...args], { env: token.env });
  const labels = async () => {
    const r = await qsign("keys", ...token.loginArgs, "--json");
    equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as KeyRow[]).map((k) => `${k.class}:${k.label}`).sort();
  };

  // A missing directory is named before the token is touched.
  const missing = await qsign(
    "keygen",
    ...token.loginArgs,
    "--key-label",
    "orphan",
    "--composite-mldsa-key",
    `${token.dir}/no/such/dir/half.key`,
  );
  equal(missing.code, 2, missing.stderr);
  ok(missing.stderr.includes("no/such/dir: no such directory"), missing.stderr);
  deepEqual(await labels(), []);

  // A file that cannot be written after the pair is made (an immutable directory refuses even
  // root): the pair is destroyed again.
  const immutable = `${token.dir}/immutable`;
  await Deno.mkdir(immutable);
  const chattr = (flag: string) =>
    new Deno.Command("chattr", { args: [flag, immutable] }).output().then((o) => ok(o.success));
  await chattr("+i");
  let unwritable;
  try {
    unwritable = await qsign(
      "keygen",
      ...token.loginArgs,
      "--key-label",
      "orphan",
      "--composite-mldsa-key",
      `${immutable}/half.key`,
    );
  } finally {
    await chattr("-i");
  }
  equal(unwritable.code, 1, unwritable.stderr);
  ok(unwritable.stderr.includes("half.key"), unwritable.stderr);
  deepEqual(await labels(), [], "no orphan key pair");

  // --key-label (and the old --label) made a pair; hsm delete destroys both halves.
  const made = await qsign("keygen", ...token.loginArgs, "--key-label", "gone", "--key-id", "0c");
  equal(made.code, 0, made.stderr);
  const old = await qsign("keygen", ...token.loginArgs, "--label", "kept", "--id", "0d");
  equal(old.code, 0, old.stderr);
  deepEqual(await labels(), ["private:gone", "private:kept", "public:gone", "public:kept"]);
  const deleted = await qsign("delete", ...token.loginArgs, "--key-label", "gone");
  equal(deleted.code, 0, deleted.stderr);
  ok(deleted.stdout.includes("1 private and 1 public"), deleted.stdout);
  deepEqual(await labels(), ["private:kept", "public:kept"]);
  const byId = await qsign("delete", ...token.loginArgs, "--key-id", "0d");
  equal(byId.code, 0, byId.stderr);
  deepEqual(await labels(), []);
  const none = await qsign("delete", ...token.loginArgs, "--key-label", "gone");
  equal(none.code, 1);
  ok(none.stderr.includes('no private key with label "gone"'), none.stderr);
});
