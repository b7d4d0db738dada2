/**
 * `qsign vault issue` and HSM-keyed renewal from the command line, against the mock Vault
 * (support/mock_vault.ts, real certificates from an ECDSA embedded CA underneath) and SoftHSM2:
 * a key made by Vault, a CSR from a file, a CSR made inside the token; a 403 that writes
 * nothing; and `qsign renew` with key_source = "hsm:LABEL" whose certificate `qsign serve`
 * then serves with the token key.
 */
import "reflect-metadata";
import { Pkcs10CertificateRequest, X509Certificate } from "@peculiar/x509";
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { fileKeyCsr } from "../../src/issuer/csr.ts";
import { certMatchesKey } from "../../src/issuer/store.ts";
import { PKI_FILES } from "../../src/pki/ca.ts";
import { generateKeyPair, privateKeyPem } from "../../src/pki/keys.ts";
import { pemDecodeAll, pemEncode } from "../../src/pki/pem.ts";
import { verifyChain } from "../../src/pki/verify.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { createTestToken, generateKeys, MODULE } from "../hsm/softhsm.ts";
import { Daemon, exchange, type Pki, qsignClient } from "../daemon/support.ts";
import { MockVault } from "./support/mock_vault.ts";
import { makeTestPki } from "./support/pki.ts";

const vaultPki = await makeTestPki();
globalThis.addEventListener("unload", () => Deno.removeSync(vaultPki.dir, { recursive: true }));

/** The Vault CA's files as the daemon tests' `Pki` (its root, and a client leaf it issued). */
const pki: Pki = {
  dir: vaultPki.dir,
  root: join(vaultPki.dir, PKI_FILES.rootCert),
  serverCert: join(vaultPki.dir, PKI_FILES.serverCert),
  serverKey: join(vaultPki.dir, PKI_FILES.serverKey),
  clientCert: join(vaultPki.dir, PKI_FILES.clientCert),
  clientKey: join(vaultPki.dir, PKI_FILES.clientKey),
};

function leafOf(pem: string): X509Certificate {
  return new X509Certificate(pemDecodeAll(pem, "CERTIFICATE")[0].slice());
}

async function vaultIssue(vault: MockVault, args: string[], env: Record<string, string> = {}) {
  return await runQsign(["vault", "issue", "--timeout", "5s", ...args], {
    env: { VAULT_ADDR: vault.address, VAULT_TOKEN: vault.rootToken, ...env },
  });
}

Deno.test("vault issue: Vault makes the key; crt, key (0600) and chain are written", async () => {
  await using dir = await tempDir();
  await using vault = new MockVault({ caDir: vaultPki.dir });
  const out = join(dir.path, "qtls-server");
  const run = await vaultIssue(vault, [
    "--cn",
    "qtls-server.qsign.local",
    "--san",
    "DNS:localhost,IP:127.0.0.1",
    "--ttl",
    "12h",
    "--out",
    out,
  ]);
  equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  deepEqual(
    { ...result, serial: typeof result.serial },
    {
      cn: "qtls-server.qsign.local",
      role: "qtls-server",
      serial: "string",
      not_after: result.not_after,
      cert: `${out}.crt`,
      key: `${out}.key`,
      chain: `${out}.chain.pem`,
    },
  );
  ok(await certMatchesKey(`${out}.crt`, `${out}.key`));
  equal((await Deno.stat(`${out}.key`)).mode! & 0o777, 0o600);
  const [leaf, intermediate] = pemDecodeAll(await Deno.readTextFile(`${out}.crt`), "CERTIFICATE");
  const chain = pemDecodeAll(await Deno.readTextFile(`${out}.chain.pem`), "CERTIFICATE");
  equal(chain.length, 2);
  await verifyChain(leaf, {
    trustAnchors: [chain[1]],
    intermediates: [intermediate],
    purpose: "server",
    host: "localhost",
  });
  equal(new X509Certificate(leaf.slice()).serialNumber.toLowerCase(), result.serial);
  const [request] = vault.seen("/v1/pki/issue/qtls-server");
  deepEqual(
    [request.body?.alt_names, request.body?.ip_sans, request.body?.ttl],
    ["localhost", "127.0.0.1", "43200s"],
  );
});

Deno.test("vault issue --csr: Vault signs a file key's CSR; no key file appears", async () => {
  await using dir = await tempDir();
  await using vault = new MockVault({ caDir: vaultPki.dir });
  const key = await generateKeyPair("ecdsa-p384");
  const csr = await fileKeyCsr(privateKeyPem(key), "test key", {
    cn: "qtls-client.qsign.local",
    sans: [],
  });
  await Deno.writeTextFile(join(dir.path, "client.csr"), pemEncode("CERTIFICATE REQUEST", csr));
  const out = join(dir.path, "client");
  const run = await vaultIssue(vault, [
    "--cn",
    "qtls-client.qsign.local",
    "--profile",
    "client",
    "--csr",
    join(dir.path, "client.csr"),
    "--out",
    out,
  ]);
  equal(run.code, 0, run.stderr);
  equal(JSON.parse(run.stdout).key, null);
  equal(JSON.parse(run.stdout).role, "qtls-client");
  deepEqual(
    new Uint8Array(leafOf(await Deno.readTextFile(`${out}.crt`)).publicKey.rawData),
    key.spki,
  );
  equal(await Deno.stat(`${out}.key`).then(() => true, () => false), false);
  equal(vault.seen("/v1/pki/sign/qtls-client").length, 1);
});

Deno.test("vault issue --hsm-key-label: the CSR is made inside SoftHSM2; the cert is for that key", async () => {
  await using dir = await tempDir();
  await using token = await createTestToken("qsign-vault-cli");
  await generateKeys(token, [{ type: "ec-p256", label: "qtls-server", id: "7a01" }]);
  await using vault = new MockVault({ caDir: vaultPki.dir });
  const out = join(dir.path, "hsm-server");
  const run = await vaultIssue(vault, [
    "--cn",
    "hsm-server.qsign.local",
    ...token.loginArgs,
    "--hsm-key-label",
    "qtls-server",
    "--out",
    out,
  ], token.env);
  equal(run.code, 0, run.stderr);
  const [request] = vault.seen("/v1/pki/sign/qtls-server");
  const csr = new Pkcs10CertificateRequest(String(request.body?.csr));
  ok(await csr.verify(), "the token signed the CSR");
  deepEqual(
    new Uint8Array(leafOf(await Deno.readTextFile(`${out}.crt`)).publicKey.rawData),
    new Uint8Array(csr.publicKey.rawData),
  );
  equal(await Deno.stat(`${out}.key`).then(() => true, () => false), false);
  // The PIN came from the environment and is in no output.
  equal((run.stdout + run.stderr).includes(token.env.QSIGN_TEST_PIN), false);
});

Deno.test("vault issue with a token Vault refuses (403): exit 1, Vault's words, nothing written", async () => {
  await using dir = await tempDir();
  await using vault = new MockVault({ caDir: vaultPki.dir });
  const run = await vaultIssue(
    vault,
    ["--cn", "qtls-server.qsign.local", "--out", join(dir.path, "server")],
    { VAULT_TOKEN: "hvs.revoked" },
  );
  equal(run.code, 1, run.stderr);
  match(run.stderr, /Vault GET \/v1\/auth\/token\/lookup-self: HTTP 403: permission denied/);
  deepEqual(await Array.fromAsync(Deno.readDir(dir.path)), []);
  equal(vault.seen("/issue/qtls-server").length, 0);
});

Deno.test("renew with key_source = hsm:LABEL via Vault sign; qsign serve --hsm serves the result", async () => {
  await using dir = await tempDir();
  await using token = await createTestToken("qsign-renew-hsm");
  await generateKeys(token, [{ type: "ec-p384", label: "server", id: "0b01" }]);
  await using vault = new MockVault({ caDir: vaultPki.dir });
  const config = join(dir.path, "qsign.toml");
  await Deno.writeTextFile(
    config,
    `metrics_listen = "127.0.0.1:0"

[renewal.vault]
address = "${vault.address}"
token = "env:VAULT_TOKEN"
timeout = "5s"

[renewal.hsm]
module = "${MODULE}"
token = "${token.label}"
pin = "env:QSIGN_TEST_PIN"

[[service]]
listen = "127.0.0.1:0"
cert = "server.crt"
ca = "${pki.root}"
[service.hsm]
module = "${MODULE}"
token_label = "${token.label}"
key_label = "server"
pin = "env:QSIGN_TEST_PIN"

[[certificate]]
name = "hsm-server"
cert = "server.crt"
chain = "server-chain.pem"
issuer = "vault"
cn = "hsm-server.qsign.local"
sans = ["hsm-server.qsign.local", "localhost"]
ttl = "24h"
key_source = "hsm:server"
`,
  );
  const env = { ...token.env, VAULT_TOKEN: vault.rootToken };
  const renew = async (...args: string[]) => {
    const run = await runQsign(["renew", "--config", config, ...args], { env });
    equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout);
  };
  const first = await renew();
  deepEqual([first.result, first.issuer, first.reason], ["renewed", "vault", "missing"]);
  equal(vault.seen("/v1/pki/sign/qtls-server").length, 1);
  equal(vault.seen("/v1/pki/issue/qtls-server").length, 0);
  equal(await Deno.stat(join(dir.path, "server.key")).then(() => true, () => false), false);

  await using daemon = await Daemon.start(["--config", config], { env: token.env });
  const before = await qsignClient(pki, daemon.port());
  equal(before.info.peerLeaf!.serialNumber.toLowerCase(), first.new_serial);
  equal(before.info.peerSignatureScheme, "ecdsa_secp384r1_sha384");
  match(await exchange(before, "via the token"), /\[세션 #1\]: 메시지 수신 완료 \(13 바이트\)/);

  // A forced renewal signs a new CSR from the same token key; the daemon's watch reloads it.
  const second = await renew("--force");
  equal(second.old_serial, first.new_serial);
  await daemon.waitFor((e) =>
    e.event === "reload_ok" &&
    (e.certificates as { serial: string }[])[0].serial.toLowerCase() === second.new_serial
  );
  const after = await qsignClient(pki, daemon.port());
  equal(after.info.peerLeaf!.serialNumber.toLowerCase(), second.new_serial);
  match(await exchange(after, "renewed"), /\[세션 #2\]: 메시지 수신 완료 \(7 바이트\)/);
  match(await exchange(before, "still on"), /\[세션 #1\]: 메시지 수신 완료 \(8 바이트\)/);
  await after.close();
  await before.close();
  equal((await daemon.stop()).code, 0);
});
