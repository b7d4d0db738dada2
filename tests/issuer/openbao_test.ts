/**
 * OpenBao's PKI (2.7) issues ML-DSA: a role with `key_type=mldsa key_bits=65` on an ML-DSA mount
 * gives qsign a post-quantum chain through the Vault issuer, and `qsign serve` completes an
 * ML-DSA-65 mutual handshake with it; HashiCorp Vault refuses such a role, and a leaf of another
 * key type than the certificate's `key_algorithm` is refused rather than stored.
 */
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import { fileKeyCsr } from "../../src/issuer/csr.ts";
import { servedFiles } from "../../src/issuer/renewal.ts";
import { VaultClient, VaultIssuer, VaultKeyMismatchError } from "../../src/issuer/vault.ts";
import { PKI_FILES } from "../../src/pki/ca.ts";
import {
  generateKeyPair,
  keyAlgorithmOfSpki,
  parsePrivateKey,
  privateKeyPem,
} from "../../src/pki/keys.ts";
import { pemDecodeAll } from "../../src/pki/pem.ts";
import { tempDir } from "../support/env.ts";
import { Daemon, exchange, type Pki, qsignClient, serveArgs } from "../daemon/support.ts";
import { MockVault } from "./support/mock_vault.ts";
import { makeTestPki } from "./support/pki.ts";

/** `bao write <mount>/roles/<name> …` over the HTTP API, as an operator sets the role up. */
async function writeRole(
  bao: MockVault,
  name: string,
  params: Record<string, unknown>,
): Promise<{ status: number; body: string }> {
  const response = await fetch(`${bao.address}/v1/pki/roles/${name}`, {
    method: "POST",
    headers: { "X-Vault-Token": bao.rootToken, "Content-Type": "application/json" },
    body: JSON.stringify(params),
  });
  return { status: response.status, body: await response.text() };
}

const SERVER_ROLE = {
  key_type: "mldsa",
  key_bits: 65,
  allowed_domains: "qsign.local,localhost",
  allow_subdomains: true,
  max_ttl: "72h",
  server_flag: true,
  client_flag: false,
};
const CLIENT_ROLE = {
  ...SERVER_ROLE,
  allowed_domains: "qsign.local",
  server_flag: false,
  client_flag: true,
};

function leafAlgorithm(pem: string): string | undefined {
  const [der] = pemDecodeAll(pem, "CERTIFICATE");
  return keyAlgorithmOfSpki(new Uint8Array(new X509Certificate(der.slice()).publicKey.rawData));
}

Deno.test("OpenBao: an mldsa role issues an ML-DSA-65 chain, and qsign serve handshakes with it", async () => {
  await using dir = await tempDir();
  const ca = await makeTestPki("mldsa65");
  try {
    await using bao = new MockVault({ caDir: ca.dir, flavor: "openbao" });
    deepEqual(await writeRole(bao, "qtls-server", SERVER_ROLE), { status: 204, body: "" });
    deepEqual(await writeRole(bao, "qtls-client", CLIENT_ROLE), { status: 204, body: "" });
    const role = JSON.parse(
      await (await fetch(`${bao.address}/v1/pki/roles/qtls-server`, {
        headers: { "X-Vault-Token": bao.rootToken },
      })).text(),
    );
    deepEqual([role.data.key_type, role.data.key_bits], ["mldsa", 65]);

    using client = new VaultClient({
      address: bao.address,
      auth: { method: "token", token: { ref: "env:QSIGN_TEST_BAO_TOKEN", field: "token" } },
    });
    Deno.env.set("QSIGN_TEST_BAO_TOKEN", bao.rootToken);
    const issuer = new VaultIssuer(client, { keyAlgorithm: "mldsa65" });
    const server = await issuer.issue({
      profile: "server",
      cn: "qtls-server.qsign.local",
      sans: ["DNS:localhost", "IP:127.0.0.1"],
      ttlSeconds: 3600,
    });
    const clientCert = await issuer.issue({
      profile: "client",
      cn: "qtls-client.qsign.local",
      sans: [],
      ttlSeconds: 3600,
    });
    equal(leafAlgorithm(server.certPem), "mldsa65");
    equal(leafAlgorithm(clientCert.certPem), "mldsa65");
    const issue = bao.seen("/issue/qtls-server")[0];
    equal(issue.body?.private_key_format, "pkcs8");
    // The key comes back as PKCS#8 ML-DSA and loads as such.
    equal((await parsePrivateKey(server.keyPem!, "OpenBao key")).keyAlgorithm, "mldsa65");
    // Every CA above the leaf is ML-DSA too: post-quantum end to end.
    for (const der of pemDecodeAll(server.chainPem, "CERTIFICATE")) {
      match(new X509Certificate(der.slice()).signatureAlgorithm.name, /^ML-DSA-65$/);
    }

    // Served by qsign, with OpenBao's client certificate on the other end.
    const files = {
      serverCert: join(dir.path, "server.crt"),
      serverKey: join(dir.path, "server.key"),
      clientCert: join(dir.path, "client.crt"),
      clientKey: join(dir.path, "client.key"),
    };
    const served = servedFiles(server);
    const presented = servedFiles(clientCert);
    await Deno.writeTextFile(files.serverCert, served.certPem);
    await Deno.writeTextFile(files.serverKey, served.keyPem!, { mode: 0o600 });
    await Deno.writeTextFile(files.clientCert, presented.certPem);
    await Deno.writeTextFile(files.clientKey, presented.keyPem!, { mode: 0o600 });
    const pki: Pki = { dir: ca.dir, root: join(ca.dir, PKI_FILES.rootCert), ...files };
    await using daemon = await Daemon.start(serveArgs(pki));
    const tls = await qsignClient(pki, daemon.port());
    try {
      equal(tls.info.signatureScheme, "mldsa65");
      match(tls.info.peerLeaf!.subject, /CN=qtls-server\.qsign\.local/);
      match(await exchange(tls, "bao"), /세션 #1/);
    } finally {
      await tls.close();
    }
    const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
    equal(handshake.client_scheme, "mldsa65");
    match(String(handshake.client_subject), /CN=qtls-client\.qsign\.local/);
  } finally {
    await Deno.remove(ca.dir, { recursive: true });
  }
});

Deno.test("OpenBao: sign takes an ML-DSA CSR of the role's size and refuses another key type", async () => {
  const ca = await makeTestPki("mldsa65");
  try {
    await using bao = new MockVault({ caDir: ca.dir, flavor: "openbao" });
    await writeRole(bao, "qtls-server", SERVER_ROLE);
    using client = new VaultClient({
      address: bao.address,
      auth: { method: "token", token: { ref: "env:QSIGN_TEST_BAO_TOKEN", field: "token" } },
    });
    Deno.env.set("QSIGN_TEST_BAO_TOKEN", bao.rootToken);
    const issuer = new VaultIssuer(client);
    const subject = { cn: "qtls-server.qsign.local", sans: ["DNS:localhost"] };
    const request = async (alg: "mldsa65" | "ecdsa-p256") =>
      await fileKeyCsr(privateKeyPem(await generateKeyPair(alg)), alg, subject);

    const signed = await issuer.issue({
      profile: "server",
      ...subject,
      ttlSeconds: 3600,
      csrDer: await request("mldsa65"),
    });
    equal(leafAlgorithm(signed.certPem), "mldsa65");
    equal(signed.keyPem, undefined);
    await rejects(
      issuer.issue({
        profile: "server",
        ...subject,
        ttlSeconds: 3600,
        csrDer: await request("ecdsa-p256"),
      }),
      /role requires keys of type mldsa with 65 bits; the CSR has ecdsa-p256/,
    );
  } finally {
    await Deno.remove(ca.dir, { recursive: true });
  }
});

Deno.test("a leaf of another key type than key_algorithm is refused, with the role fix", async () => {
  const ca = await makeTestPki("mldsa65");
  try {
    await using bao = new MockVault({ caDir: ca.dir, flavor: "openbao" });
    await writeRole(bao, "qtls-server", SERVER_ROLE);
    using client = new VaultClient({
      address: bao.address,
      auth: { method: "token", token: { ref: "env:QSIGN_TEST_BAO_TOKEN", field: "token" } },
    });
    Deno.env.set("QSIGN_TEST_BAO_TOKEN", bao.rootToken);
    const issuer = new VaultIssuer(client, { keyAlgorithm: "mldsa87" });
    const error = await issuer.issue({
      profile: "server",
      cn: "qtls-server.qsign.local",
      sans: [],
      ttlSeconds: 3600,
    }).then(() => undefined, (e) => e);
    ok(error instanceof VaultKeyMismatchError, String(error));
    match(error.message, /issue\/qtls-server has a mldsa65 key, not mldsa87; it was not stored/);
    match(error.message, /bao write pki\/roles\/qtls-server key_type=mldsa key_bits=87/);
  } finally {
    await Deno.remove(ca.dir, { recursive: true });
  }
});

Deno.test("roles: HashiCorp Vault knows no mldsa; OpenBao takes key_bits 44, 65 or 87 only", async () => {
  const ca = await makeTestPki("mldsa65");
  try {
    await using vault = new MockVault({ caDir: ca.dir });
    const refused = await writeRole(vault, "qtls-server", SERVER_ROLE);
    equal(refused.status, 400);
    deepEqual(JSON.parse(refused.body), { errors: ["unknown key type mldsa"] });
    await using bao = new MockVault({ caDir: ca.dir, flavor: "openbao" });
    for (const bits of [44, 65, 87]) {
      equal((await writeRole(bao, `r${bits}`, { ...SERVER_ROLE, key_bits: bits })).status, 204);
    }
    const wrong = await writeRole(bao, "r66", { ...SERVER_ROLE, key_bits: 66 });
    equal(wrong.status, 400);
    match(wrong.body, /invalid key_bits 66 for key_type mldsa: use 44, 65 or 87/);
  } finally {
    await Deno.remove(ca.dir, { recursive: true });
  }
});
