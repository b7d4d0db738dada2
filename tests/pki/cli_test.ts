/** `qsign pki` as an operator runs it: every subcommand, its output, and its exit status. */
import { equal, match, ok } from "node:assert/strict";
import { createCertificateRequest } from "../../src/pki/certificate.ts";
import { generateKeyPair } from "../../src/pki/keys.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import { PEER_NODE, runQsign, tempDir } from "../support/env.ts";

Deno.test("qsign pki --help lists the subcommands; each has its own --help", async () => {
  const help = await runQsign(["pki", "--help"]);
  equal(help.code, 0);
  for (const sub of ["init", "issue", "revoke", "crl", "show", "verify"]) {
    match(help.stdout, new RegExp(`^  ${sub} `, "m"));
  }
  const verifyHelp = await runQsign(["pki", "verify", "--help"]);
  equal(verifyHelp.code, 0);
  for (
    const option of [
      "--trust",
      "--untrusted",
      "--crl",
      "--crl-check",
      "--purpose",
      "--host",
      "--ip",
      "--at",
      "--max-depth",
    ]
  ) {
    ok(verifyHelp.stdout.includes(option), option);
  }
  const unknown = await runQsign(["pki", "frobnicate"]);
  equal(unknown.code, 2);
  const badOption = await runQsign(["pki", "init", "--dri", "x"]);
  equal(badOption.code, 2);
  match(badOption.stderr, /unknown option --dri/);
});

Deno.test("qsign pki: init, issue, show, verify, revoke, crl", async (t) => {
  await using dir = await tempDir();
  const pki = `${dir.path}/pki`;

  await t.step("init writes the tree and refuses to overwrite it", async () => {
    const init = await runQsign(["pki", "init", "--dir", pki]);
    equal(init.code, 0, init.stderr);
    match(init.stdout, /wrote .*root-ca\.crt/);
    const again = await runQsign(["pki", "init", "--dir", pki]);
    equal(again.code, 1);
    match(again.stderr, /already holds a PKI.*--force/);
  });

  await t.step("verify prints the chain, leaf first, and exits 0", async () => {
    const ok0 = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/root-ca.crt`,
      "--purpose",
      "server",
      "--host",
      "qtls-server.qsign.local",
      `${pki}/server.crt`,
    ]);
    equal(ok0.code, 0, ok0.stderr);
    equal(
      ok0.stdout,
      "CN=qtls-server.qsign.local, O=QSIGN\nCN=QSIGN Intermediate CA (Server), O=QSIGN\nCN=QSIGN Root CA, O=QSIGN\n",
    );
    const byIp = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/root-ca.crt`,
      "--ip",
      "::1",
      `${pki}/server.crt`,
    ]);
    equal(byIp.code, 0, byIp.stderr);
  });

  await t.step("verify exits 1 with one line naming the reason", async () => {
    const cases: [string[], string][] = [
      [["--purpose", "client", `${pki}/server.crt`], "purpose mismatch"],
      [["--host", "evil.example", `${pki}/server.crt`], "name mismatch"],
      [["--at", "2099-01-01T00:00:00Z", `${pki}/server.crt`], "expired"],
      [["--at", "2001-01-01T00:00:00Z", `${pki}/server.crt`], "not yet valid"],
      [["--max-depth", "0", `${pki}/server.crt`], "max depth"],
    ];
    for (const [args, reason] of cases) {
      const r = await runQsign(["pki", "verify", "--trust", `${pki}/root-ca.crt`, ...args]);
      equal(r.code, 1, `${reason}: ${r.stderr}`);
      equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      match(r.stderr, new RegExp(`^qsign: ${reason}: `));
    }
    // Trusting the server intermediate's sibling: no path.
    const unknown = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/client-ca.crt`,
      `${pki}/server.crt`,
    ]);
    equal(unknown.code, 1);
    match(unknown.stderr, /^qsign: unknown issuer: /);
  });

  await t.step("verify exits 2 on unreadable input", async () => {
    const missing = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/nope.crt`,
      `${pki}/server.crt`,
    ]);
    equal(missing.code, 2);
    match(missing.stderr, /nope\.crt: no such file/);
    await Deno.writeTextFile(
      `${dir.path}/garbage.pem`,
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    const garbage = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/root-ca.crt`,
      `${dir.path}/garbage.pem`,
    ]);
    equal(garbage.code, 2);
    const badTime = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/root-ca.crt`,
      "--at",
      "yesterday",
      `${pki}/server.crt`,
    ]);
    equal(badTime.code, 2);
  });

  await t.step("issue writes PREFIX.crt (leaf + intermediate) and PREFIX.key (0600)", async () => {
    const r = await runQsign([
      "pki",
      "issue",
      "--dir",
      pki,
      "--profile",
      "client",
      "--cn",
      "bob",
      "--san",
      "EMAIL:bob@example.test,URI:spiffe://qsign/bob",
      "--ttl",
      "24h",
      "--alg",
      "ecdsa-p384",
      "--out",
      `${dir.path}/bob`,
    ]);
    equal(r.code, 0, r.stderr);
    match(r.stdout, /issued serial [0-9a-f]{32}/);
    equal((await Deno.stat(`${dir.path}/bob.key`)).mode! & 0o777, 0o600);
    const show = await runQsign(["pki", "show", `${dir.path}/bob.crt`]);
    equal(show.code, 0, show.stderr);
    match(show.stdout, /subject: +CN=bob, O=QSIGN/);
    match(show.stdout, /issuer: +CN=QSIGN Intermediate CA \(Client\), O=QSIGN/);
    match(show.stdout, /key: +ECDSA P-384/);
    match(show.stdout, /signature: +ML-DSA-65/);
    match(show.stdout, /EKU: +clientAuth/);
    match(show.stdout, /SANs: +EMAIL:bob@example\.test, URI:spiffe:\/\/qsign\/bob/);
    match(show.stdout, /SHA-256: +([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    match(show.stdout, /certificate #2/);
    const verify = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/root-ca.crt`,
      "--purpose",
      "client",
      `${dir.path}/bob.crt`,
    ]);
    equal(verify.code, 0, verify.stderr);
  });

  await t.step(
    "issue --csr certifies the request's key; a CSR with a bad signature is refused",
    async () => {
      const key = await generateKeyPair("mldsa87");
      const csr = new Uint8Array(
        (await createCertificateRequest({ subject: "CN=carol.qsign.local", signer: key })).rawData,
      );
      await Deno.writeTextFile(`${dir.path}/carol.csr`, pemEncode("CERTIFICATE REQUEST", csr));
      const show = await runQsign(["pki", "show", `${dir.path}/carol.csr`]);
      match(show.stdout, /certificate request #1/);
      match(show.stdout, /signature ok: +yes/);
      const r = await runQsign([
        "pki",
        "issue",
        "--dir",
        pki,
        "--profile",
        "server",
        "--cn",
        "carol.qsign.local",
        "--csr",
        `${dir.path}/carol.csr`,
        "--days",
        "3",
        "--out",
        `${dir.path}/carol`,
      ]);
      equal(r.code, 0, r.stderr);
      await Deno.stat(`${dir.path}/carol.crt`);
      ok(
        !(await Deno.stat(`${dir.path}/carol.key`).then(() => true, () => false)),
        "no key written for a CSR",
      );
      const fromRequest = await runQsign([
        "pki",
        "issue",
        "--dir",
        pki,
        "--profile",
        "server",
        "--csr",
        `${dir.path}/carol.csr`,
        "--out",
        `${dir.path}/carol-from-request`,
      ]);
      equal(fromRequest.code, 0, fromRequest.stderr);
      const shown = await runQsign(["pki", "show", `${dir.path}/carol-from-request.crt`]);
      match(shown.stdout, /CN=carol\.qsign\.local/);
      const tampered = csr.slice();
      tampered[tampered.length - 1] ^= 0x01;
      await Deno.writeTextFile(`${dir.path}/bad.csr`, pemEncode("CERTIFICATE REQUEST", tampered));
      const bad = await runQsign([
        "pki",
        "issue",
        "--dir",
        pki,
        "--profile",
        "server",
        "--cn",
        "x.qsign.local",
        "--csr",
        `${dir.path}/bad.csr`,
        "--out",
        `${dir.path}/bad`,
      ]);
      equal(bad.code, 1);
      match(bad.stderr, /signature does not verify/);
      ok(!(await Deno.stat(`${dir.path}/bad.crt`).then(() => true, () => false)));
    },
  );

  await t.step("revoke by certificate file, then crl; verify --crl says revoked", async () => {
    const revoke = await runQsign([
      "pki",
      "revoke",
      "--dir",
      pki,
      "--reason",
      "keyCompromise",
      `${dir.path}/bob.crt`,
    ]);
    equal(revoke.code, 0, revoke.stderr);
    match(revoke.stdout, /revoked [0-9a-f]{32} \(CN=bob, O=QSIGN\), reason keyCompromise/);
    const crl = await runQsign([
      "pki",
      "crl",
      "--dir",
      pki,
      "--ca",
      "client",
      "--out",
      `${dir.path}/client.crl`,
      "--days",
      "2",
    ]);
    equal(crl.code, 0, crl.stderr);
    const show = await runQsign(["pki", "show", `${dir.path}/client.crl`]);
    match(show.stdout, /CRL #1/);
    match(show.stdout, /issuer: +CN=QSIGN Intermediate CA \(Client\), O=QSIGN/);
    match(show.stdout, /revoked: +1\n +[0-9a-f]{32} \S+ keyCompromise/);
    const verify = await runQsign([
      "pki",
      "verify",
      "--trust",
      `${pki}/root-ca.crt`,
      "--crl",
      `${dir.path}/client.crl`,
      `${dir.path}/bob.crt`,
    ]);
    equal(verify.code, 1);
    match(verify.stderr, /^qsign: revoked: CN=bob, O=QSIGN/);
    const unknownSerial = await runQsign(["pki", "revoke", "--dir", pki, "00ff00ff"]);
    equal(unknownSerial.code, 1);
  });

  await t.step("revoke an intermediate; crl --ca root; verify --crl-check chain", async () => {
    const verifyClient = (...extra: string[]) =>
      runQsign([
        "pki",
        "verify",
        "--trust",
        `${pki}/root-ca.crt`,
        "--crl",
        `${dir.path}/client.crl`,
        ...extra,
        `${pki}/client.crt`,
      ]);
    const rootCrl = () =>
      runQsign(["pki", "crl", "--dir", pki, "--ca", "root", "--out", `${dir.path}/root.crl`]);
    // The chain check needs the Root CA's CRL for the intermediate, as OpenSSL's does.
    const noRootCrl = await verifyClient("--crl-check", "chain");
    equal(noRootCrl.code, 1);
    match(noRootCrl.stderr, /^qsign: crl missing: no CRL from CN=QSIGN Root CA/);
    equal((await rootCrl()).code, 0);
    const chain = await verifyClient("--crl", `${dir.path}/root.crl`, "--crl-check", "chain");
    equal(chain.code, 0, chain.stderr);

    const revoke = await runQsign(["pki", "revoke", "--dir", pki, `${pki}/client-ca.crt`]);
    equal(revoke.code, 0, revoke.stderr);
    match(revoke.stdout, /\(CN=QSIGN Intermediate CA \(Client\), O=QSIGN\)/);
    const crl = await rootCrl();
    equal(crl.code, 0, crl.stderr);
    match(crl.stdout, /: 1 revoked/);
    const show = await runQsign(["pki", "show", `${dir.path}/root.crl`]);
    match(show.stdout, /issuer: +CN=QSIGN Root CA, O=QSIGN/);
    const revoked = await verifyClient("--crl", `${dir.path}/root.crl`);
    equal(revoked.code, 1);
    match(revoked.stderr, /^qsign: revoked: CN=QSIGN Intermediate CA \(Client\)/);
    const badMode = await verifyClient("--crl-check", "everything");
    equal(badMode.code, 2);
  });
});

Deno.test("pki init --passphrase --root-dir: CA keys encrypted, the root key only offline", async () => {
  await using dir = await tempDir();
  const pki = `${dir.path}/pki`;
  const offline = `${dir.path}/offline`;
  const env = { CA_PASS: "a long CA passphrase" };
  const init = await runQsign(
    ["pki", "init", "--dir", pki, "--root-dir", offline, "--passphrase", "env:CA_PASS"],
    { env },
  );
  equal(init.code, 0, init.stderr);
  // The root key is on the offline medium only; the PKI keeps the root certificate.
  equal(await exists(`${pki}/root-ca.key`), false);
  ok(await exists(`${pki}/root-ca.crt`));
  for (const key of [`${offline}/root-ca.key`, `${pki}/server-ca.key`, `${pki}/client-ca.key`]) {
    match(await Deno.readTextFile(key), /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/, key);
    equal((await Deno.stat(key)).mode! & 0o777, 0o600);
  }
  // The leaves the daemon serves unattended stay plain.
  match(await Deno.readTextFile(`${pki}/server.key`), /^-----BEGIN PRIVATE KEY-----\n/);

  // Issuing needs the intermediate's passphrase: from --passphrase or QSIGN_CA_PASSPHRASE.
  const issue = ["pki", "issue", "--dir", pki, "--profile", "client", "--cn", "c.qsign.local"];
  const without = await runQsign([...issue, "--out", `${dir.path}/c`]);
  equal(without.code, 2);
  match(
    without.stderr,
    /client-ca\.key: is an encrypted private key: give its passphrase with --passphrase REF or QSIGN_CA_PASSPHRASE/,
  );
  const wrong = await runQsign([...issue, "--out", `${dir.path}/c`], {
    env: { QSIGN_CA_PASSPHRASE: "env:WRONG", WRONG: "not the passphrase" },
  });
  equal(wrong.code, 2);
  match(wrong.stderr, /wrong passphrase/);
  const issued = await runQsign([...issue, "--out", `${dir.path}/c`], {
    env: { ...env, QSIGN_CA_PASSPHRASE: "env:CA_PASS" },
  });
  equal(issued.code, 0, issued.stderr);

  // The Root CA's CRL needs the offline key: named, then given with --root-dir.
  const crl = ["pki", "crl", "--dir", pki, "--ca", "root", "--out", `${dir.path}/root.crl`];
  const offlineMissing = await runQsign([...crl, "--passphrase", "env:CA_PASS"], { env });
  equal(offlineMissing.code, 1);
  match(offlineMissing.stderr, /Root CA's key is not in .* give --root-dir/);
  const rootCrl = await runQsign([...crl, "--passphrase", "env:CA_PASS", "--root-dir", offline], {
    env,
  });
  equal(rootCrl.code, 0, rootCrl.stderr);

  // New intermediates signed by the kept root: a second PKI from the same offline root.
  const second = await runQsign(
    [
      "pki",
      "init",
      "--dir",
      `${dir.path}/pki2`,
      "--root-dir",
      offline,
      "--passphrase",
      "env:CA_PASS",
    ],
    { env },
  );
  equal(second.code, 0, second.stderr);
  equal(
    await Deno.readTextFile(`${dir.path}/pki2/root-ca.crt`),
    await Deno.readTextFile(`${pki}/root-ca.crt`),
  );
  const verified = await runQsign([
    "pki",
    "verify",
    "--trust",
    `${pki}/root-ca.crt`,
    `${dir.path}/pki2/server.crt`,
  ]);
  equal(verified.code, 0, verified.stderr);

  // OpenSSL 3.5 (Node 26) reads the encrypted ML-DSA CA key with the passphrase.
  const node = await new Deno.Command(PEER_NODE, {
    args: [
      "-e",
      `const c=require("node:crypto");const k=c.createPrivateKey({key:require("node:fs")` +
      `.readFileSync(process.argv[1]),passphrase:process.env.CA_PASS});console.log(k.asymmetricKeyType)`,
      `${pki}/server-ca.key`,
    ],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  equal(
    new TextDecoder().decode(node.stdout).trim(),
    "ml-dsa-65",
    new TextDecoder().decode(node.stderr),
  );
});

Deno.test("pki issue: --force to overwrite, no serial recorded for a failed issue, --subject/--ou", async () => {
  await using dir = await tempDir();
  const pki = `${dir.path}/pki`;
  equal((await runQsign(["pki", "init", "--dir", pki, "--alg", "ecdsa-p256"])).code, 0);
  const serials = async () =>
    (JSON.parse(await Deno.readTextFile(`${pki}/index.json`)).certificates as unknown[]).length;
  const before = await serials();
  const issue = ["pki", "issue", "--dir", pki, "--profile", "server", "--cn", "a.qsign.local"];
  const out = `${dir.path}/a`;
  equal((await runQsign([...issue, "--out", out])).code, 0);
  const first = await Deno.readTextFile(`${out}.crt`);
  const again = await runQsign([...issue, "--out", out]);
  equal(again.code, 2);
  match(again.stderr, /a\.crt exists; use --force to replace it/);
  equal(await Deno.readTextFile(`${out}.crt`), first);
  equal(await serials(), before + 1);
  const forced = await runQsign([...issue, "--out", out, "--force"]);
  equal(forced.code, 0, forced.stderr);
  ok((await Deno.readTextFile(`${out}.crt`)) !== first);
  equal(await serials(), before + 2);

  // An output that cannot be written: one line naming it, and nothing recorded.
  const missing = await runQsign([...issue, "--out", `${dir.path}/no/such/dir/a`]);
  equal(missing.code, 2);
  match(missing.stderr, /^qsign: .*no\/such\/dir: no such directory/);
  await Deno.mkdir(`${dir.path}/ro`, { mode: 0o500 });
  await Deno.writeTextFile(`${dir.path}/blocker.crt`, "");
  await Deno.mkdir(`${dir.path}/blocker.key`);
  const unwritable = await runQsign([...issue, "--out", `${dir.path}/blocker`, "--force"]);
  equal(unwritable.code, 1, unwritable.stderr);
  match(unwritable.stderr, /^qsign: .*blocker\.key: cannot write private key/);
  equal(await serials(), before + 2);

  // --subject and --ou shape the subject as allow_ou and the verifier see it.
  const subject = await runQsign([
    "pki",
    "issue",
    "--dir",
    pki,
    "--profile",
    "client",
    "--subject",
    "CN=gw.example, OU=payments, O=ACME",
    "--san",
    "DNS:gw.example,URI:spiffe://example/gw",
    "--out",
    `${dir.path}/gw`,
  ]);
  equal(subject.code, 0, subject.stderr);
  const shown = await runQsign(["pki", "show", `${dir.path}/gw.crt`]);
  match(shown.stdout, /subject: +CN=gw\.example, OU=payments, O=ACME/);
  match(shown.stdout, /spiffe:\/\/example\/gw/);
  const ou = await runQsign([
    "pki",
    "issue",
    "--dir",
    pki,
    "--profile",
    "client",
    "--cn",
    "c.example",
    "--ou",
    "payments",
    "--ou",
    "ops",
    "--out",
    `${dir.path}/c`,
  ]);
  equal(ou.code, 0, ou.stderr);
  match(
    (await runQsign(["pki", "show", `${dir.path}/c.crt`])).stdout,
    /subject: +CN=c\.example, OU=payments, OU=ops, O=QSIGN/,
  );
  const badSubject = await runQsign([
    ...issue.slice(0, 6),
    "--subject",
    "OU=x",
    "--out",
    `${dir.path}/x`,
  ]);
  equal(badSubject.code, 2);
  match(badSubject.stderr, /exactly one CN/);
});

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}
