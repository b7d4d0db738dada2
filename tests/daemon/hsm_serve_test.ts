/**
 * `qsign serve --hsm`: the daemon signs its handshakes with a key inside a SoftHSM2 token (the
 * seam `resolveSigner` → `openHsmSigner`), reports the token in the banner, `/readyz` and
 * `qtls_hsm_connected`, and an OpenSSL 3.5 client completes the demo against it.
 */
import { equal, match } from "node:assert/strict";
import { issueLeaf } from "../../src/pki/ca.ts";
import { readDerObjects } from "../../src/pki/pem.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { createTestToken, generateKeys, MODULE } from "../hsm/softhsm.ts";
import { Daemon, httpGet, makePki, PEER_ECHO_CLIENT, runPeer, serveArgs } from "./support.ts";

Deno.test("qsign serve --hsm signs with a token key; OpenSSL 3.5 completes the demo", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using token = await createTestToken("qsign-daemon");
  await generateKeys(token, [{ type: "ec-p384", label: "server", id: "01" }]);
  const csr = await runQsign([
    "hsm",
    "csr",
    ...token.loginArgs,
    "--key-label",
    "server",
    "--subject",
    "/O=QSIGN/CN=hsm-server.qsign.local",
    "--san",
    "localhost",
    "--out",
    `${dir.path}/server.csr`,
  ], { env: token.env });
  equal(csr.code, 0, csr.stderr);
  const [csrDer] = await readDerObjects(`${dir.path}/server.csr`, "CERTIFICATE REQUEST");
  const leaf = await issueLeaf({
    dir: pki.dir,
    profile: "server",
    cn: "hsm-server.qsign.local",
    csrDer,
    sans: ["DNS:localhost"],
  });
  await Deno.writeTextFile(`${dir.path}/server.crt`, leaf.certPem);

  await using daemon = await Daemon.start([
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--cert",
    `${dir.path}/server.crt`,
    "--ca",
    pki.root,
    "--hsm",
    "--hsm-module",
    MODULE,
    "--hsm-token-label",
    token.label,
    "--hsm-key-label",
    "server",
    "--hsm-pin",
    "env:QSIGN_TEST_PIN",
  ], { env: token.env });
  match(daemon.stderr, new RegExp(`HSM: on \\(${MODULE}, token ${token.label}\\)`));

  const result = await runPeer(PEER_ECHO_CLIENT, [
    String(daemon.port()),
    pki.root,
    pki.clientCert,
    pki.clientKey,
    "Hello, Q-TLS!",
  ]) as { reply: string };
  equal(result.reply, "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (13 바이트)\n");
  const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
  equal(handshake.scheme, "ecdsa_secp384r1_sha384");

  const base = `http://127.0.0.1:${daemon.metricsPort}`;
  match((await httpGet(`${base}/metrics`)).body, /^qtls_hsm_connected 1$/m);
  equal((await httpGet(`${base}/readyz`)).status, 200);
  const status = JSON.parse((await httpGet(`${base}/status`)).body);
  match(status.services[0].certificates[0].key, /^pkcs11:/);
  // The PIN reference is resolved inside the daemon; the PIN itself is in no log line.
  equal(JSON.stringify(daemon.events).includes(token.env.QSIGN_TEST_PIN), false);
  equal((await daemon.stop()).code, 0);
});

Deno.test("qsign connect --hsm authenticates with a client key inside the token", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using token = await createTestToken("qsign-client");
  await generateKeys(token, [{ type: "ec-p256", label: "client", id: "02" }]);
  const csr = await runQsign([
    "hsm",
    "csr",
    ...token.loginArgs,
    "--key-label",
    "client",
    "--subject",
    "/O=QSIGN/CN=hsm-client.qsign.local",
    "--out",
    `${dir.path}/client.csr`,
  ], { env: token.env });
  equal(csr.code, 0, csr.stderr);
  const [csrDer] = await readDerObjects(`${dir.path}/client.csr`, "CERTIFICATE REQUEST");
  const leaf = await issueLeaf({
    dir: pki.dir,
    profile: "client",
    cn: "hsm-client.qsign.local",
    csrDer,
  });
  await Deno.writeTextFile(`${dir.path}/client.crt`, leaf.certPem);

  await using daemon = await Daemon.start(serveArgs(pki, ["--allow-cn", "hsm-client.qsign.local"]));
  const run = await runQsign([
    "connect",
    `127.0.0.1:${daemon.port()}`,
    "--servername",
    "localhost",
    "--ca",
    pki.root,
    "--cert",
    `${dir.path}/client.crt`,
    "--hsm",
    ...token.loginArgs,
    "--hsm-key-label",
    "client",
    "--send",
    "from the token",
  ], { env: token.env });
  equal(run.code, 0, run.stderr);
  match(run.stdout, /client signature ecdsa_secp256r1_sha256/);
  match(run.stdout, /← QSIGN 서버 응답 \[세션 #1\]: 메시지 수신 완료 \(14 바이트\)/);
  const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
  match(String(handshake.client_subject), /CN=hsm-client\.qsign\.local/);
  equal(handshake.client_scheme, "ecdsa_secp256r1_sha256");
});
