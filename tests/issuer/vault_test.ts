/**
 * The Vault client and issuer against a server that answers as Vault's API documentation says,
 * issuing real certificates with the embedded CA underneath (support/mock_vault.ts).
 */
import "reflect-metadata";
import { Pkcs10CertificateRequest, X509Certificate } from "@peculiar/x509";
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { type RetryPolicy, VaultClient, VaultError, VaultIssuer } from "../../src/issuer/vault.ts";
import type { VaultAuth } from "../../src/issuer/vault.ts";
import { fileKeyCsr, tokenKeyCsr } from "../../src/issuer/csr.ts";
import { generateKeyPair, parsePrivateKey, privateKeyPem } from "../../src/pki/keys.ts";
import { pemDecodeAll } from "../../src/pki/pem.ts";
import { verifyChain } from "../../src/pki/verify.ts";
import { tempDir } from "../support/env.ts";
import { createTestToken, generateKeys, MODULE } from "../hsm/softhsm.ts";
import { MockVault, type MockVaultOptions } from "./support/mock_vault.ts";
import { makeTestPki } from "./support/pki.ts";

const FAST_RETRY: RetryPolicy = { deadlineMs: 5_000, initialDelayMs: 10, maxDelayMs: 50 };

const pki = await makeTestPki();
// The PKI directory is shared by every test here; removed when the module's tests are done.
globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

async function withVault(
  options: Partial<MockVaultOptions>,
  body: (vault: MockVault, dir: string) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir();
  await using vault = new MockVault({ caDir: pki.dir, ...options });
  await body(vault, dir.path);
}

async function tokenFile(dir: string, token: string): Promise<VaultAuth> {
  await Deno.writeTextFile(`${dir}/vault-token`, `${token}\n`, { mode: 0o600 });
  return { method: "token", token: { ref: `file://${dir}/vault-token`, field: "--token" } };
}

function spkiOf(certPem: string): Uint8Array {
  return new Uint8Array(
    new X509Certificate(pemDecodeAll(certPem, "CERTIFICATE")[0].slice()).publicKey.rawData,
  );
}

Deno.test("issue: Vault makes the key; the certificate chains to the root and matches it", async () => {
  await withVault({ namespace: "qtls" }, async (vault, dir) => {
    using client = new VaultClient({
      address: vault.address,
      auth: await tokenFile(dir, vault.rootToken),
      namespace: "qtls",
      retry: FAST_RETRY,
    });
    const issued = await new VaultIssuer(client).issue({
      profile: "server",
      cn: "qtls-server.qsign.local",
      sans: ["DNS:qtls-server.qsign.local", "IP:127.0.0.1"],
      ttlSeconds: 86400,
    });
    const leaf = new X509Certificate(issued.certPem);
    match(leaf.subject, /^CN=qtls-server\.qsign\.local\b/);
    equal(leaf.serialNumber.toLowerCase(), issued.serial);
    equal(issued.notAfter.getTime(), Math.floor(leaf.notAfter.getTime() / 1000) * 1000);
    deepEqual(spkiOf(issued.certPem), (await parsePrivateKey(issued.keyPem!)).spki);
    const [intermediate, root] = pemDecodeAll(issued.chainPem, "CERTIFICATE");
    await verifyChain(new Uint8Array(leaf.rawData), {
      trustAnchors: [root],
      intermediates: [intermediate],
      purpose: "server",
      host: "qtls-server.qsign.local",
    });

    const [request] = vault.seen("/v1/pki/issue/qtls-server");
    equal(request.token, vault.rootToken);
    equal(request.namespace, "qtls");
    deepEqual(request.body, {
      common_name: "qtls-server.qsign.local",
      alt_names: "qtls-server.qsign.local",
      ip_sans: "127.0.0.1",
      ttl: "86400s",
      format: "pem",
      private_key_format: "pkcs8",
    });
  });
});

Deno.test("sign: a CSR from a file key is signed by the client role; no key comes back", async () => {
  await withVault({}, async (vault, dir) => {
    using client = new VaultClient({
      address: vault.address,
      auth: await tokenFile(dir, vault.rootToken),
      retry: FAST_RETRY,
    });
    const key = await generateKeyPair("ecdsa-p384");
    const csrDer = await fileKeyCsr(privateKeyPem(key), "test key", {
      cn: "qtls-client.qsign.local",
      sans: [],
    });
    const issued = await new VaultIssuer(client).issue({
      profile: "client",
      cn: "qtls-client.qsign.local",
      sans: [],
      ttlSeconds: 3600,
      csrDer,
    });
    equal(issued.keyPem, undefined);
    deepEqual(spkiOf(issued.certPem), key.spki);
    const [request] = vault.seen("/v1/pki/sign/qtls-client");
    match(String(request.body?.csr), /^-----BEGIN CERTIFICATE REQUEST-----\n/);
  });
});

Deno.test("sign: a CSR made inside SoftHSM2 gets a certificate for the token's key", async () => {
  await using token = await createTestToken("qsign-vault");
  await generateKeys(token, [{ type: "ec-p256", label: "qtls-server", id: "5a01" }]);
  await withVault({}, async (vault, dir) => {
    using client = new VaultClient({
      address: vault.address,
      auth: await tokenFile(dir, vault.rootToken),
      retry: FAST_RETRY,
    });
    const subject = { cn: "qtls-server.qsign.local", sans: ["DNS:qtls-server.qsign.local"] };
    const csrDer = await tokenKeyCsr(
      { module: MODULE, token: token.label, pin: `env:QSIGN_TEST_PIN`, keyLabel: "qtls-server" },
      subject,
    );
    const issued = await new VaultIssuer(client).issue({
      profile: "server",
      ...subject,
      ttlSeconds: 3600,
      csrDer,
    });
    // The CSR carries the token's public key; the certificate must carry the same.
    const tokenSpki = new Pkcs10CertificateRequest(csrDer.slice()).publicKey.rawData;
    deepEqual(spkiOf(issued.certPem), new Uint8Array(tokenSpki));
    match(new X509Certificate(issued.certPem).subject, /^CN=qtls-server\.qsign\.local\b/);
  });
});

Deno.test("AppRole: role_id and secret_id files log in; the login token issues", async () => {
  const approle = { roleId: "qtls-role-id", secretId: "qtls-secret-id", tokenTtl: 1200 };
  await withVault({ approle }, async (vault, dir) => {
    await Deno.writeTextFile(`${dir}/role_id`, approle.roleId);
    await Deno.writeTextFile(`${dir}/secret_id`, approle.secretId);
    using client = new VaultClient({
      address: vault.address,
      auth: {
        method: "approle",
        roleId: { ref: `file://${dir}/role_id`, field: "role_id" },
        secretId: { ref: `file://${dir}/secret_id`, field: "secret_id" },
      },
      retry: FAST_RETRY,
    });
    await new VaultIssuer(client).issue({
      profile: "server",
      cn: "a.qsign.local",
      sans: [],
      ttlSeconds: 600,
    });
    const [login] = vault.seen("/v1/auth/approle/login");
    deepEqual(login.body, { role_id: approle.roleId, secret_id: approle.secretId });
    equal(login.token, null);
    const [issue] = vault.seen("/v1/pki/issue/qtls-server");
    match(issue.token!, /^hvs\.approle-/);
    equal(vault.tokenTtl(issue.token!), 1200);
  });
});

Deno.test("AppRole: a wrong secret_id is Vault's 400, verbatim, not retried", async () => {
  const approle = { roleId: "r", secretId: "right", tokenTtl: 60 };
  await withVault({ approle }, async (vault) => {
    Deno.env.set("QSIGN_TEST_ROLE_ID", "r");
    Deno.env.set("QSIGN_TEST_SECRET_ID", "wrong");
    using client = new VaultClient({
      address: vault.address,
      auth: {
        method: "approle",
        roleId: { ref: "env:QSIGN_TEST_ROLE_ID", field: "role_id" },
        secretId: { ref: "env:QSIGN_TEST_SECRET_ID", field: "secret_id" },
      },
      retry: FAST_RETRY,
    });
    try {
      const issue = new VaultIssuer(client).issue({
        profile: "server",
        cn: "a.qsign.local",
        sans: [],
        ttlSeconds: 60,
      });
      await rejects(issue, (e) => {
        ok(e instanceof VaultError);
        equal(e.status, 400);
        deepEqual(e.errors, ["invalid role or secret ID"]);
        match(e.message, /POST \/v1\/auth\/approle\/login: HTTP 400: invalid role or secret ID/);
        return true;
      });
      equal(vault.seen("/login").length, 1);
    } finally {
      Deno.env.delete("QSIGN_TEST_ROLE_ID");
      Deno.env.delete("QSIGN_TEST_SECRET_ID");
    }
  });
});

Deno.test("a token close to expiry is renewed with renew-self; a fresh one is not", async () => {
  for (const [ttl, renewed] of [[600, true], [86400, false]] as const) {
    const rootToken = { token: "hvs.short", ttl, renewable: true };
    await withVault({ rootToken }, async (vault, dir) => {
      const log: string[] = [];
      using client = new VaultClient({
        address: vault.address,
        auth: await tokenFile(dir, "hvs.short"),
        retry: FAST_RETRY,
        tokenRenewBelowSeconds: 3600,
        log: (m) => log.push(m),
      });
      await new VaultIssuer(client).issue({
        profile: "server",
        cn: "a.qsign.local",
        sans: [],
        ttlSeconds: 60,
      });
      equal(vault.seen("/v1/auth/token/lookup-self").length, 1);
      equal(vault.seen("/v1/auth/token/renew-self").length, renewed ? 1 : 0, `ttl ${ttl}`);
      if (renewed) match(log.join("\n"), /Vault token had 600s left; renewed for 600s/);
    });
  }
});

Deno.test("503 sealed is retried with backoff until Vault answers", async () => {
  await withVault({}, async (vault, dir) => {
    using client = new VaultClient({
      address: vault.address,
      auth: await tokenFile(dir, vault.rootToken),
      retry: FAST_RETRY,
    });
    vault.sealFor(3);
    const issued = await new VaultIssuer(client).issue({
      profile: "server",
      cn: "a.qsign.local",
      sans: [],
      ttlSeconds: 60,
    });
    ok(issued.serial);
    equal(vault.seen("/v1/auth/token/lookup-self").length, 4); // three 503s, then the answer
  });
});

Deno.test("a Vault sealed past the deadline gives up with its 503 message", async () => {
  await withVault({}, async (vault, dir) => {
    using client = new VaultClient({
      address: vault.address,
      auth: await tokenFile(dir, vault.rootToken),
      retry: { deadlineMs: 1_000, initialDelayMs: 20, maxDelayMs: 40 },
    });
    vault.sealFor(1_000);
    await rejects(client.caChain("pki"), (e) => {
      ok(e instanceof VaultError);
      equal(e.status, 503);
      deepEqual(e.errors, ["Vault is sealed"]);
      ok(e.attempts > 1, `attempts ${e.attempts}`);
      match(
        e.message,
        /GET \/v1\/pki\/ca_chain: HTTP 503: Vault is sealed \(gave up after \d+ attempts\)/,
      );
      return true;
    });
  });
});

Deno.test("no Vault listening: network errors are retried, then reported", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  using client = new VaultClient({
    address: `http://127.0.0.1:${port}`,
    auth: { method: "token", token: { ref: "env:QSIGN_UNUSED", field: "--token" } },
    retry: { deadlineMs: 200, initialDelayMs: 20, maxDelayMs: 40 },
  });
  await rejects(client.caChain("pki"), (e) => {
    ok(e instanceof VaultError);
    equal(e.status, undefined);
    ok(e.attempts > 1);
    match(e.message, /no response/);
    return true;
  });
});

Deno.test("403 for a bad token and 400 for a refused name reach the operator verbatim", async () => {
  await withVault({}, async (vault, dir) => {
    using bad = new VaultClient({
      address: vault.address,
      auth: await tokenFile(dir, "hvs.revoked"),
      retry: FAST_RETRY,
    });
    await rejects(
      new VaultIssuer(bad).issue({
        profile: "server",
        cn: "a.qsign.local",
        sans: [],
        ttlSeconds: 60,
      }),
      (e) => {
        ok(e instanceof VaultError);
        equal(e.status, 403);
        deepEqual(e.errors, ["permission denied"]);
        equal(e.attempts, 1);
        return true;
      },
    );
    using good = new VaultClient({
      address: vault.address,
      auth: await tokenFile(dir, vault.rootToken),
      retry: FAST_RETRY,
    });
    await rejects(
      new VaultIssuer(good).issue({
        profile: "server",
        cn: "evil.example.com",
        sans: [],
        ttlSeconds: 60,
      }),
      /HTTP 400: common name evil\.example\.com not allowed by this role/,
    );
    await rejects(
      new VaultIssuer(good, { roles: { server: "nope", client: "nope" } })
        .issue({ profile: "server", cn: "a.qsign.local", sans: [], ttlSeconds: 60 }),
      /HTTP 400: unknown role: nope/,
    );
  });
});

Deno.test("ca_chain answers the mount's chain as PEM without a token", async () => {
  await withVault({}, async (vault) => {
    using client = new VaultClient({
      address: vault.address,
      auth: { method: "token", token: { ref: "env:QSIGN_UNUSED", field: "--token" } },
      retry: FAST_RETRY,
    });
    const chain = pemDecodeAll(await client.caChain("pki"), "CERTIFICATE");
    equal(chain.length, 2);
    equal(
      new X509Certificate(chain[1].slice()).subject,
      new X509Certificate(chain[1].slice()).issuer,
    );
    equal(vault.seen("/ca_chain")[0].token, null);
  });
});
