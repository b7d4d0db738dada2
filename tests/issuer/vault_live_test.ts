/**
 * The Vault flow against a real Vault server: registered only when `VAULT_ADDR` and
 * `VAULT_TOKEN` are set (nothing runs or counts otherwise). The PKI mount and role come from
 * `QSIGN_VAULT_MOUNT` (default `pki`) and `QSIGN_VAULT_ROLE` (default `qtls-server`); the role
 * must allow subdomains of qsign.local and localhost, with EC keys. `VAULT_CACERT` and
 * `VAULT_NAMESPACE` are honoured. Commands for `vault server -dev`: see the README.
 */
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { fileKeyCsr } from "../../src/issuer/csr.ts";
import { certMatchesKey } from "../../src/issuer/store.ts";
import { DEFAULT_RETRY, VaultClient, VaultIssuer } from "../../src/issuer/vault.ts";
import { generateKeyPair, privateKeyPem } from "../../src/pki/keys.ts";
import { pemDecodeAll } from "../../src/pki/pem.ts";
import { verifyChain } from "../../src/pki/verify.ts";
import { runQsign, tempDir } from "../support/env.ts";

const address = Deno.env.get("VAULT_ADDR");
const rootToken = Deno.env.get("VAULT_TOKEN");
const mount = Deno.env.get("QSIGN_VAULT_MOUNT") ?? "pki";
const role = Deno.env.get("QSIGN_VAULT_ROLE") ?? "qtls-server";
const namespace = Deno.env.get("VAULT_NAMESPACE") || undefined;
const caFile = Deno.env.get("VAULT_CACERT") || undefined;

/** A name the role allows and no earlier run used. */
function uniqueName(): string {
  return `live-${crypto.randomUUID().slice(0, 8)}.qsign.local`;
}

/** A client authenticating with the token in the secret reference `tokenRef`. */
async function client(tokenRef: string, log?: (m: string) => void, renewBelow?: number) {
  return new VaultClient({
    address: address!,
    auth: { method: "token", token: { ref: tokenRef, field: "test token" } },
    namespace,
    caCertPem: caFile === undefined ? undefined : await Deno.readTextFile(caFile),
    retry: { ...DEFAULT_RETRY, deadlineMs: 20_000 },
    tokenRenewBelowSeconds: renewBelow,
    log,
  });
}

/** The chain's last certificate is the anchor; the leaf must reach it for `host`. */
async function verifyIssued(leafPem: string, chainPem: string, host: string) {
  const chain = pemDecodeAll(chainPem, "CERTIFICATE");
  ok(chain.length >= 1, "Vault answered a CA chain");
  await verifyChain(pemDecodeAll(leafPem, "CERTIFICATE")[0], {
    trustAnchors: [chain[chain.length - 1]],
    intermediates: chain.slice(0, -1),
    purpose: "server",
    host,
  });
}

/** A direct Vault API call, for what qsign itself never asks (creating a test token). */
async function vaultApi(path: string, token: string, body: object): Promise<VaultAnswer> {
  const httpClient = caFile
    ? Deno.createHttpClient({ caCerts: [await Deno.readTextFile(caFile)] })
    : undefined;
  try {
    const headers: Record<string, string> = { "X-Vault-Token": token };
    if (namespace) headers["X-Vault-Namespace"] = namespace;
    const response = await fetch(`${address}${path}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      client: httpClient,
    });
    const text = await response.text();
    ok(response.ok, `${path}: HTTP ${response.status}: ${text}`);
    return text ? JSON.parse(text) : {};
  } finally {
    httpClient?.close();
  }
}

interface VaultAnswer {
  auth?: { client_token?: string };
}

if (address && rootToken) {
  Deno.test("live Vault: qsign vault issue gets a key and a certificate that chains", async () => {
    await using dir = await tempDir();
    const cn = uniqueName();
    const out = join(dir.path, "server");
    const run = await runQsign([
      "vault",
      "issue",
      "--cn",
      cn,
      "--san",
      "DNS:localhost,IP:127.0.0.1",
      "--role",
      role,
      "--mount",
      mount,
      "--ttl",
      "1h",
      "--out",
      out,
    ]);
    equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout);
    equal(result.cn, cn);
    ok(await certMatchesKey(`${out}.crt`, `${out}.key`));
    const leaf = new X509Certificate(await Deno.readTextFile(`${out}.crt`));
    match(leaf.subject, new RegExp(`CN=${cn.replaceAll(".", "\\.")}`));
    equal(leaf.serialNumber.toLowerCase(), result.serial);
    await verifyIssued(
      await Deno.readTextFile(`${out}.crt`),
      await Deno.readTextFile(`${out}.chain.pem`),
      "localhost",
    );
  });

  Deno.test("live Vault: sign a CSR; the certificate carries our key; ca_chain agrees", async () => {
    using vault = await client("env:VAULT_TOKEN");
    const key = await generateKeyPair("ecdsa-p256");
    const cn = uniqueName();
    const subject = { cn, sans: [`DNS:${cn}`] };
    const issued = await new VaultIssuer(vault, { mount, roles: { server: role, client: role } })
      .issue({
        profile: "server",
        ...subject,
        ttlSeconds: 600,
        csrDer: await fileKeyCsr(privateKeyPem(key), "test key", subject),
      });
    equal(issued.keyPem, undefined);
    const leaf = new X509Certificate(issued.certPem);
    deepEqual(new Uint8Array(leaf.publicKey.rawData), key.spki);
    await verifyIssued(issued.certPem, issued.chainPem, cn);

    const caChain = pemDecodeAll(await vault.caChain(mount), "CERTIFICATE");
    ok(caChain.length >= 1, "ca_chain is not empty");
    const issuedChain = pemDecodeAll(issued.chainPem, "CERTIFICATE");
    deepEqual(caChain[caChain.length - 1], issuedChain[issuedChain.length - 1], "same root");
  });

  Deno.test("live Vault: a renewable token close to expiry is renewed with renew-self", async () => {
    const created = await vaultApi("/v1/auth/token/create", rootToken, {
      ttl: "1h",
      renewable: true,
      display_name: "qsign-live-test",
    });
    const token = created.auth?.client_token;
    ok(token, "Vault created a token");
    await using dir = await tempDir();
    await Deno.writeTextFile(join(dir.path, "token"), token, { mode: 0o600 });
    try {
      const log: string[] = [];
      // Anything under two hours left counts as close to expiry here.
      using vault = await client(`file://${join(dir.path, "token")}`, (m) => log.push(m), 7200);
      const cn = uniqueName();
      const issued = await new VaultIssuer(vault, { mount, roles: { server: role, client: role } })
        .issue({ profile: "server", cn, sans: [], ttlSeconds: 300 });
      ok(issued.serial);
      match(log.join("\n"), /Vault token had \d+s left; renewed for \d+s/);
    } finally {
      await vaultApi("/v1/auth/token/revoke-self", token, {});
    }
  });
}
