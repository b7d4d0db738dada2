/** `qsign pki` as an operator runs it: every subcommand, its output, and its exit status. */
import { equal, match, ok } from "node:assert/strict";
import { createCertificateRequest } from "../../src/pki/certificate.ts";
import { generateKeyPair } from "../../src/pki/keys.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import { runQsign, tempDir } from "../support/env.ts";

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
