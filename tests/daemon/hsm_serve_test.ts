/**
 * The HSM production flow of the README, through the qsign CLI on a SoftHSM2 token: keys made
 * by `qsign hsm keygen`, CSRs signed in the token by `qsign hsm csr`, certificates from the
 * ML-DSA-65 CA of `qsign pki` via `pki issue --csr`, then `qsign serve --hsm` and
 * `qsign connect --hsm` in mutual TLS with OpenSSL 3.5 (Node 26) and with each other.
 *
 * One token and one daemon serve every proof of the HSM issue, in order: mutual TLS both ways,
 * the composite key with its ECDSA half in the token, the keys' attributes, 32 handshakes on 4
 * sessions, the token vanishing and returning under a running daemon, and finally nothing
 * secret in anything the daemon printed or served.
 */
import "reflect-metadata";
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { X509Certificate } from "@peculiar/x509";
import { PKI_FILES } from "../../src/pki/ca.ts";
import { readCertificatesFile } from "../../src/pki/pem.ts";
import { PEER_NODE, runQsign, tempDir } from "../support/env.ts";
import {
  createTestToken,
  MODULE,
  PIN,
  pkcs11ToolPrivateKeys,
  privateValueRefusal,
} from "../hsm/softhsm.ts";
import {
  clientArgs,
  Daemon,
  exchange,
  httpGet,
  type Pki,
  qsignClient,
  runPeer,
} from "./support.ts";

/**
 * OpenSSL 3.5 mutual-TLS clients: `port ca cert key count message` opens `count` connections at
 * once, each sends `message` and waits for the first reply; prints one result per connection
 * (the reply and the server certificate, or the error).
 */
const PEER_CLIENTS = `
const fs = require("fs");
const tls = require("tls");
const [port, ca, cert, key, count, message] = process.argv.slice(1);
const options = {
  host: "127.0.0.1", port: Number(port), servername: "localhost",
  ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key),
  ecdhCurve: "SecP384r1MLKEM1024", minVersion: "TLSv1.3",
};
const one = () => new Promise((resolve) => {
  const socket = tls.connect(options, () => socket.write(message));
  const timer = setTimeout(() => done({ ok: false, error: "no reply in 30 s" }), 30000);
  function done(result) { clearTimeout(timer); socket.end(); resolve(result); }
  socket.once("data", (reply) => {
    const server = socket.getPeerX509Certificate();
    done({
      ok: true, reply: reply.toString("utf8"), protocol: socket.getProtocol(),
      fingerprint: server.fingerprint256.replaceAll(":", "").toLowerCase(),
      curve: server.publicKey.asymmetricKeyDetails.namedCurve,
    });
  });
  socket.on("error", (e) => done({ ok: false, error: e.message }));
});
Promise.all(Array.from({ length: Number(count) }, one))
  .then((results) => console.log(JSON.stringify(results)));
`;

/**
 * An OpenSSL 3.5 server requiring client certificates: `ca cert key`; prints `listening` with
 * its port, `secure` with each verified client's subject, and answers each message.
 */
const PEER_SERVER = `
const fs = require("fs");
const [ca, cert, key] = process.argv.slice(1);
const server = require("tls").createServer({
  ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key),
  requestCert: true, rejectUnauthorized: true,
  ecdhCurve: "SecP384r1MLKEM1024:X25519MLKEM768", minVersion: "TLSv1.3",
}, (socket) => {
  const client = socket.getPeerX509Certificate();
  console.log(JSON.stringify({
    event: "secure", subject: client.subject, authorized: socket.authorized,
    curve: client.publicKey.asymmetricKeyDetails.namedCurve,
  }));
  socket.on("data", (data) => socket.write("OpenSSL 3.5 heard: " + data.toString("utf8")));
  socket.on("error", () => {});
});
server.on("tlsClientError", (e) => console.log(JSON.stringify({ event: "error", error: e.message })));
server.listen(0, "127.0.0.1", () =>
  console.log(JSON.stringify({ event: "listening", port: server.address().port })));
`;

interface PeerResult {
  ok: boolean;
  reply?: string;
  protocol?: string;
  fingerprint?: string;
  curve?: string;
  error?: string;
}

/** A running PEER_SERVER whose stdout lines are read as JSON events. */
class PeerServer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  #buffered = "";

  constructor(args: string[]) {
    this.#child = new Deno.Command(PEER_NODE, {
      args: ["-e", PEER_SERVER, "--", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next event, within 20 s. */
  async next(): Promise<Record<string, unknown>> {
    const deadline = setTimeout(() => this.#child.kill("SIGKILL"), 20_000);
    try {
      while (!this.#buffered.includes("\n")) {
        const { value, done } = await this.#lines.read();
        if (done) throw new Error("the OpenSSL server exited");
        this.#buffered += value;
      }
    } finally {
      clearTimeout(deadline);
    }
    const newline = this.#buffered.indexOf("\n");
    const line = this.#buffered.slice(0, newline);
    this.#buffered = this.#buffered.slice(newline + 1);
    return JSON.parse(line);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#child.kill("SIGKILL");
    await this.#lines.cancel();
    await this.#child.status;
  }
}

/** Polls `check` every 200 ms for at most `ms`; fails naming `what` if it never holds. */
async function until(check: () => Promise<boolean>, what: string, ms = 40_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The leaf certificate of a chain file. */
async function leafOf(file: string): Promise<X509Certificate> {
  return new X509Certificate((await readCertificatesFile(file))[0] as Uint8Array<ArrayBuffer>);
}

const hex = (bytes: ArrayBuffer) =>
  Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

Deno.test("the HSM production flow: qsign hsm, pki issue --csr, serve --hsm, connect --hsm", async (t) => {
  await using dir = await tempDir();
  await using token = await createTestToken("qsign-prod");
  const path = (name: string) => `${dir.path}/${name}`;
  const pkiDir = path("pki");
  const pki: Pki = {
    dir: pkiDir,
    root: `${pkiDir}/${PKI_FILES.rootCert}`,
    serverCert: `${pkiDir}/${PKI_FILES.serverCert}`,
    serverKey: `${pkiDir}/${PKI_FILES.serverKey}`,
    clientCert: `${pkiDir}/${PKI_FILES.clientCert}`,
    clientKey: `${pkiDir}/${PKI_FILES.clientKey}`,
  };
  // The PIN as production keeps it: a file only its owner reads, named by reference in argv.
  await Deno.writeTextFile(path("hsm.pin"), `${PIN}\n`, { mode: 0o600 });
  const hsm = [
    "--hsm-module",
    MODULE,
    "--hsm-token-label",
    token.label,
    "--hsm-pin",
    `file://${path("hsm.pin")}`,
  ];
  /** Everything the CLI printed, searched for secrets at the end. */
  const printed: string[] = [];
  const qsign = async (...args: string[]) => {
    const result = await runQsign(args, { env: token.env });
    printed.push(result.stdout, result.stderr);
    equal(result.code, 0, `qsign ${args.join(" ")}\n${result.stderr}`);
    return result.stdout;
  };
  /** `qsign hsm keygen` + `qsign hsm csr` + `qsign pki issue --csr` for one token key. */
  const certify = async (
    key: { label: string; id: string; type: string; cn: string; profile: string },
    composite: string[] = [],
  ) => {
    await qsign(
      "hsm",
      "keygen",
      ...hsm,
      "--type",
      key.type,
      "--label",
      key.label,
      "--id",
      key.id,
      ...composite,
    );
    await qsign(
      "hsm",
      "csr",
      ...hsm,
      "--key-label",
      key.label,
      "--subject",
      `/C=KR/O=QSIGN/CN=${key.cn}`,
      "--san",
      key.cn,
      ...composite,
      "--out",
      path(`${key.label}.csr`),
    );
    await qsign(
      "pki",
      "issue",
      "--dir",
      pkiDir,
      "--profile",
      key.profile,
      "--cn",
      key.cn,
      "--csr",
      path(`${key.label}.csr`),
      "--out",
      path(key.label),
    );
    return path(`${key.label}.crt`);
  };

  let serverCert = "", clientCert = "", compositeCert = "";
  const compositeMldsaKey = path("composite-mldsa.key");
  /** `qsign connect` to `port` with the composite client certificate, its ECDSA half in the token. */
  const compositeClient = (port: string | number, ...extra: string[]) => [
    "connect",
    `127.0.0.1:${port}`,
    ...clientArgs(pki, { cert: compositeCert }),
    "--hsm",
    ...hsm,
    "--hsm-key-label",
    "qtls-composite",
    ...extra,
  ];
  await t.step(
    "keys made in the token, certified by the ML-DSA-65 CA from their CSRs",
    async () => {
      await qsign("pki", "init", "--dir", pkiDir);
      serverCert = await certify({
        label: "qtls-server",
        id: "01",
        type: "ec-p384",
        cn: "localhost",
        profile: "server",
      });
      clientCert = await certify({
        label: "qtls-client",
        id: "02",
        type: "ec-p256",
        cn: "hsm-client.qsign.local",
        profile: "client",
      });
      compositeCert = await certify({
        label: "qtls-composite",
        id: "03",
        type: "ec-p384",
        cn: "composite-client.qsign.local",
        profile: "client",
      }, ["--composite-mldsa-key", compositeMldsaKey]);

      const leaf = await leafOf(serverCert);
      equal(leaf.subject, "C=KR, O=QSIGN, CN=localhost", "the CSR's subject, whole");
      deepEqual(leaf.publicKey.algorithm, { name: "ECDSA", namedCurve: "P-384" });
      equal(leaf.signatureAlgorithm.name, "ML-DSA-65");
      const composite = await leafOf(compositeCert);
      equal(composite.publicKey.algorithm.name, "1.3.6.1.5.5.7.6.46");
      for (const key of ["qtls-server", "qtls-client", "qtls-composite"]) {
        equal(
          await Deno.stat(path(`${key}.key`)).then(() => true, () => false),
          false,
          `${key}: no key file`,
        );
      }
      equal((await Deno.stat(compositeMldsaKey)).mode! & 0o777, 0o600);
    },
  );

  await t.step(
    "the token keys are sensitive and never extractable, and cannot be read",
    async () => {
      const rows: {
        class: string;
        label: string;
        id: string;
        sensitive?: boolean;
        extractable?: boolean;
        neverExtractable?: boolean;
      }[] = JSON.parse(await qsign("hsm", "keys", ...hsm, "--json"));
      const privates = rows.filter((k) => k.class === "private");
      const tool = await pkcs11ToolPrivateKeys(token);
      deepEqual(privates.map((k) => [k.label, k.id]), [["qtls-client", "02"], [
        "qtls-composite",
        "03",
      ], ["qtls-server", "01"]]);
      deepEqual(tool.map((k) => [k.label, k.id]), privates.map((k) => [k.label, k.id]));
      for (const [i, key] of privates.entries()) {
        deepEqual(
          [key.sensitive, key.extractable, key.neverExtractable],
          [true, false, true],
          key.label,
        );
        const access = tool[i].access;
        ok(access.includes("sensitive") && access.includes("never extractable"), access.join());
        ok(!access.includes("extractable"), access.join());
        equal(await privateValueRefusal(token, key.label), "CKR_ATTRIBUTE_SENSITIVE", key.label);
      }
    },
  );

  await using daemon = await Daemon.start([
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--cert",
    serverCert,
    "--ca",
    pki.root,
    "--hsm",
    ...hsm,
    "--hsm-key-label",
    "qtls-server",
    "--hsm-sessions",
    "4",
  ], { env: { ...token.env, QTLS_LOG_LEVEL: "DEBUG" } });
  const port = String(daemon.port());
  const base = `http://127.0.0.1:${daemon.metricsPort}`;
  const serverFingerprint = hex(await (await leafOf(serverCert)).getThumbprint("SHA-256"));
  const openssl = async (count: number, message: string) =>
    await runPeer(PEER_CLIENTS, [
      port,
      pki.root,
      pki.clientCert,
      pki.clientKey,
      String(count),
      message,
    ]) as PeerResult[];
  const handshakes = () => daemon.events.filter((e) => e.event === "handshake_ok");

  await t.step("an OpenSSL 3.5 client completes mutual TLS with qsign serve --hsm", async () => {
    const [result] = await openssl(1, "Hello, Q-TLS!");
    equal(result.error, undefined);
    equal(result.reply, "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (13 바이트)\n");
    equal(result.protocol, "TLSv1.3");
    equal(result.fingerprint, serverFingerprint, "the token key's certificate");
    equal(result.curve, "secp384r1");
    const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
    equal(handshake.scheme, "ecdsa_secp384r1_sha384", "CertificateVerify signed in the token");
    equal(handshake.client_scheme, "mldsa65");
    equal(handshake.group, "SecP384r1MLKEM1024");
    match((await httpGet(`${base}/metrics`)).body, /^qtls_hsm_connected 1$/m);
    equal((await httpGet(`${base}/readyz`)).status, 200);
  });

  await t.step("qsign connect --hsm completes mutual TLS with an OpenSSL 3.5 server", async () => {
    await using server = new PeerServer([pki.root, pki.serverCert, pki.serverKey]);
    const listening = await server.next();
    equal(listening.event, "listening");
    const out = await qsign(
      "connect",
      `127.0.0.1:${listening.port}`,
      ...clientArgs(pki, { cert: clientCert }),
      "--hsm",
      ...hsm,
      "--hsm-key-label",
      "qtls-client",
      "--send",
      "from the token",
    );
    match(out, /server signature mldsa65, client signature ecdsa_secp256r1_sha256/);
    match(out, /← OpenSSL 3\.5 heard: from the token/);
    const secure = await server.next();
    deepEqual([secure.event, secure.authorized, secure.curve], ["secure", true, "prime256v1"]);
    match(String(secure.subject), /^CN=hsm-client\.qsign\.local$/m);
  });

  await t.step(
    "composite ML-DSA-65 + ECDSA-P384 with its ECDSA half in the token, qsign to qsign",
    async () => {
      const before = handshakes().length;
      const out = await qsign(
        ...compositeClient(
          port,
          "--hsm-composite-mldsa-key",
          compositeMldsaKey,
          "--send",
          "composite",
        ),
      );
      match(
        out,
        /server signature ecdsa_secp384r1_sha384, client signature mldsa65_ecdsa_secp384r1_sha384/,
      );
      match(out, /← QSIGN 서버 응답 \[세션 #\d+\]: 메시지 수신 완료 \(9 바이트\)/);
      const handshake = await daemon.waitFor((e) =>
        e.event === "handshake_ok" && handshakes().indexOf(e) >= before
      );
      equal(handshake.client_scheme, "mldsa65_ecdsa_secp384r1_sha384", "verified by the daemon");
      match(String(handshake.client_subject), /CN=composite-client\.qsign\.local/);
    },
  );

  await t.step(
    "qsign serve with a composite certificate whose ECDSA half is in the token, to qsign connect",
    async () => {
      const serverMldsaKey = path("composite-server-mldsa.key");
      const compositeServerCert = await certify({
        label: "qtls-composite-server",
        id: "04",
        type: "ec-p384",
        cn: "localhost",
        profile: "server",
      }, ["--composite-mldsa-key", serverMldsaKey]);
      const serve = [
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--cert",
        compositeServerCert,
        "--ca",
        pki.root,
        "--hsm",
        ...hsm,
        "--hsm-key-label",
        "qtls-composite-server",
      ];
      // Without its ML-DSA half the composite certificate cannot be served: the error says so.
      const incomplete = await runQsign(["serve", ...serve, "--check-config"], { env: token.env });
      equal(incomplete.code, 2, incomplete.stderr);
      match(incomplete.stderr, /hsm\.composite_mldsa_key \(--hsm-composite-mldsa-key\).*composite/);
      const withoutHalf = await runQsign(compositeClient(port, "--send", "x"), { env: token.env });
      equal(withoutHalf.code, 2, withoutHalf.stderr);
      match(withoutHalf.stderr, /--hsm-composite-mldsa-key: .* is a composite ML-DSA-65/);

      await using composite = await Daemon.start(
        [...serve, "--hsm-composite-mldsa-key", serverMldsaKey],
        { env: token.env },
      );
      const out = await qsign(
        ...compositeClient(
          composite.port(),
          "--hsm-composite-mldsa-key",
          compositeMldsaKey,
          "--send",
          "both composite",
        ),
      );
      match(
        out,
        /server signature mldsa65_ecdsa_secp384r1_sha384, client signature mldsa65_ecdsa_secp384r1_sha384/,
      );
      match(out, /← QSIGN 서버 응답 \[세션 #1\]: 메시지 수신 완료 \(14 바이트\)/);
      const handshake = await composite.waitFor((e) => e.event === "handshake_ok");
      equal(handshake.scheme, "mldsa65_ecdsa_secp384r1_sha384", "the daemon's CertificateVerify");
      equal(handshake.client_scheme, "mldsa65_ecdsa_secp384r1_sha384");
      equal((await composite.stop()).code, 0);
      printed.push(JSON.stringify(composite.events), composite.stderr);
    },
  );

  await t.step("32 simultaneous handshakes through a pool of 4 sessions all complete", async () => {
    const before = handshakes().length;
    const results = await openssl(32, "concurrent");
    deepEqual(results.filter((r) => !r.ok), []);
    equal(results.filter((r) => r.reply?.endsWith("(10 바이트)\n")).length, 32);
    await until(
      () => Promise.resolve(handshakes().length - before === 32),
      "32 handshake_ok lines",
      10_000,
    );
    ok(handshakes().slice(before).every((e) => e.scheme === "ecdsa_secp384r1_sha384"));
  });

  await t.step("the token vanishes and returns under the running daemon", async () => {
    const away = path("tokens-away");
    const established = await qsignClient(pki, daemon.port());
    try {
      match(await exchange(established, "before"), /\(6 바이트\)/);

      // SoftHSM keeps a token as files in its token directory: an empty directory is a token gone.
      await Deno.rename(token.tokenDir, away);
      await Deno.mkdir(token.tokenDir);
      const [refused] = await openssl(1, "while the token is away");
      equal(refused.ok, false);
      match(refused.error!, /alert internal error/i);
      const failed = await daemon.waitFor((e) => e.event === "handshake_failed");
      equal(failed.alert, "internal_error");
      match(String(failed.reason), /HSM .*CKR_/);
      const lost = await daemon.waitFor((e) => e.event === "hsm_disconnected");
      match(String(lost.hsm), /token "qsign-prod"/);
      match((await httpGet(`${base}/metrics`)).body, /^qtls_hsm_connected 0$/m);
      const readyz = await httpGet(`${base}/readyz`);
      equal(readyz.status, 503);
      match(readyz.body, /hsm:pkcs11:token=qsign-prod;object=qtls-server.*unavailable/);
      match(await exchange(established, "during"), /\(6 바이트\)/, "the open connection goes on");

      await Deno.remove(token.tokenDir, { recursive: true });
      await Deno.rename(away, token.tokenDir);
      await until(async () => (await httpGet(`${base}/readyz`)).status === 200, "/readyz 200");
      await daemon.waitFor((e) => e.event === "hsm_connected");
      match((await httpGet(`${base}/metrics`)).body, /^qtls_hsm_connected 1$/m);
      const [after] = await openssl(1, "token is back");
      equal(after.error, undefined);
      match(after.reply!, /\(13 바이트\)/);
      match(await exchange(established, "after"), /\(5 바이트\)/);
    } finally {
      await established.close();
    }
  });

  await t.step("no PIN and no private key in the daemon's logs, /status or /metrics", async () => {
    const status = await httpGet(`${base}/status`);
    const metrics = await httpGet(`${base}/metrics`);
    match(
      JSON.parse(status.body).services[0].certificates[0].key,
      /^pkcs11:token=qsign-prod;object=qtls-server;id=%01/,
    );
    equal((await daemon.stop()).code, 0);
    ok(daemon.events.some((e) => e.level === "DEBUG"), "the audit log ran at DEBUG");
    const outputs = {
      "audit log": JSON.stringify(daemon.events),
      stderr: daemon.stderr,
      "/status": status.body,
      "/metrics": metrics.body,
      "CLI output": printed.join("\n"),
    };
    for (const [where, text] of Object.entries(outputs)) {
      ok(!text.includes(PIN), `the PIN is in the ${where}`);
      ok(!text.includes("PRIVATE KEY"), `a private key is in the ${where}`);
    }
  });
});
