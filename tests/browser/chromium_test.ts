/**
 * A real browser through qsign: Debian's Chromium (headless, driven by playwright-core) loads a
 * page through `qsign serve --mode proxy`, negotiating X25519MLKEM768 and accepting an ML-DSA-65
 * server certificate whose root it trusts through the `CACertificates` policy (Debian 12's NSS
 * cannot import an ML-DSA root). What the browser reports over the DevTools protocol is checked
 * against qsign's audit line. The second case authenticates the browser with a client
 * certificate from its NSS database, chosen by the `AutoSelectCertificateForUrls` policy.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { Buffer } from "node:buffer";
import { pemDecodeAll } from "../../src/pki/pem.ts";
import { Daemon, makePki, type Pki, serveArgs } from "../daemon/support.ts";
import { PEER_NODE, ROOT, tempDir } from "../support/env.ts";

const POLICY_DIR = "/etc/chromium/policies/managed";
const PAGE_TEXT = "qsign behind Chromium";
/** The TLS code point of mldsa65, as DevTools reports `serverSignatureAlgorithm`. */
const MLDSA65 = 0x0905;

interface BrowserResult {
  status?: number;
  text?: string;
  error?: string;
  security?: {
    protocol: string;
    keyExchangeGroup?: string;
    serverSignatureAlgorithm?: number;
    subjectName: string;
  };
}

/** A plaintext HTTP backend on loopback serving one page. */
function backend(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(`<!doctype html><title>qsign</title><body><h1>${PAGE_TEXT}</h1></body>`, {
        headers: { "content-type": "text/html; charset=utf-8" },
      }),
  );
}

/** Installs Chromium managed policies for the duration of one case. */
async function withPolicies<T>(policies: object, run: () => Promise<T>): Promise<T> {
  await Deno.mkdir(POLICY_DIR, { recursive: true });
  const file = `${POLICY_DIR}/qsign-test-${Deno.pid}.json`;
  await Deno.writeTextFile(file, JSON.stringify(policies));
  try {
    return await run();
  } finally {
    await Deno.remove(file);
  }
}

async function firstCertificateDer(path: string): Promise<Uint8Array> {
  const [block] = pemDecodeAll(await Deno.readTextFile(path), "CERTIFICATE");
  ok(block, `${path} holds a certificate`);
  return block;
}

async function browse(url: string, dir: string, home?: string): Promise<BrowserResult> {
  const out = await new Deno.Command(PEER_NODE, {
    args: [
      `${ROOT}/tests/browser/peer/chromium.mjs`,
      ...["--url", url, "--user-data-dir", `${dir}/profile`, "--screenshot", `${dir}/page.png`],
      ...["--playwright-core", `${ROOT}/.tools/node_modules/playwright-core`],
      ...(home ? ["--home", home] : []),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  ok(out.success, `chromium.mjs failed:\n${decoder.decode(out.stderr)}`);
  return JSON.parse(decoder.decode(out.stdout));
}

async function assertScreenshot(path: string): Promise<void> {
  const png = await Deno.readFile(path);
  deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "the screenshot is a PNG");
  ok(png.length > 1000, `the screenshot has content (${png.length} bytes)`);
}

/** An NSS database under `home` holding the client's key and chain, as Chromium reads it. */
async function nssDatabaseWith(home: string, client: Pki): Promise<void> {
  const db = `sql:${home}/.pki/nssdb`;
  await Deno.mkdir(`${home}/.pki/nssdb`, { recursive: true });
  const run = async (cmd: string, args: string[]) => {
    const out = await new Deno.Command(cmd, { args, stdin: "null" }).output();
    ok(out.success, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  };
  await run("certutil", ["-N", "-d", db, "--empty-password"]);
  const p12 = `${home}/client.p12`;
  await run("openssl", [
    "pkcs12",
    "-export",
    ...["-inkey", client.clientKey, "-in", client.clientCert],
    ...["-name", "qsign client", "-passout", "pass:", "-out", p12],
  ]);
  await run("pk12util", ["-i", p12, "-d", db, "-W", ""]);
}

Deno.test("Chromium loads a page through qsign over X25519MLKEM768 with an ML-DSA-65 server certificate", async () => {
  await using dir = await tempDir("qsign-chromium-");
  const pki = await makePki(`${dir.path}/pki`);
  await using http = backend();
  await using daemon = await Daemon.start(
    serveArgs(pki, [
      ...["--mode", "proxy", "--target", `127.0.0.1:${http.addr.port}`, "--client-auth", "none"],
    ]),
  );
  const url = `https://localhost:${daemon.port()}/`;
  const root = Buffer.from(await firstCertificateDer(pki.root)).toString("base64");
  const result = await withPolicies({ CACertificates: [root] }, () => browse(url, dir.path));

  equal(result.error, undefined, `Chromium loaded ${url}`);
  equal(result.status, 200);
  ok(result.text?.includes(PAGE_TEXT), `page text: ${result.text}`);
  equal(result.security?.protocol, "TLS 1.3");
  equal(result.security?.keyExchangeGroup, "X25519MLKEM768");
  equal(result.security?.serverSignatureAlgorithm, MLDSA65);
  const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
  equal(handshake.group, result.security?.keyExchangeGroup);
  equal(handshake.scheme, "mldsa65");
  equal(handshake.client_subject, undefined);
  await assertScreenshot(`${dir.path}/page.png`);
});

Deno.test("Chromium authenticates with a client certificate selected by policy", async () => {
  await using dir = await tempDir("qsign-chromium-mtls-");
  const pki = await makePki(`${dir.path}/pki`);
  // Debian 12's NSS keeps only classical keys, so the browser's chain is ECDSA P-256.
  const clientPki = await makePki(`${dir.path}/client-pki`, "ecdsa-p256");
  const home = `${dir.path}/home`;
  await nssDatabaseWith(home, clientPki);
  await using http = backend();
  await using daemon = await Daemon.start([
    ...serveArgs(pki, ["--mode", "proxy", "--target", `127.0.0.1:${http.addr.port}`]),
    ...["--client-auth", "require", "--ca", clientPki.root],
  ]);
  const port = daemon.port();
  const url = `https://localhost:${port}/`;
  const root = Buffer.from(await firstCertificateDer(pki.root)).toString("base64");
  const result = await withPolicies({
    CACertificates: [root],
    AutoSelectCertificateForUrls: [
      JSON.stringify({ pattern: `https://localhost:${port}`, filter: {} }),
    ],
  }, () => browse(url, dir.path, home));

  equal(result.error, undefined, `Chromium loaded ${url}`);
  equal(result.status, 200);
  ok(result.text?.includes(PAGE_TEXT), `page text: ${result.text}`);
  const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
  equal(handshake.group, "X25519MLKEM768");
  equal(handshake.client_scheme, "ecdsa_secp256r1_sha256");
  ok(
    String(handshake.client_subject).includes("qtls-client.qsign.local"),
    `client subject: ${handshake.client_subject}`,
  );
  await assertScreenshot(`${dir.path}/page.png`);
});
