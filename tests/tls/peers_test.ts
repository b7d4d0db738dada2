/**
 * qsign against independent TLS 1.3 stacks, both directions where the stack can serve:
 * OpenSSL 3.5 (Node 26) with its middlebox compatibility mode on and off, full and
 * HelloRetryRequest handshakes; BoringSSL (Bun, node:tls); rustls (Deno.listenTls /
 * Deno.connectTls in a subprocess); and OpenSSL 3.0 clients (Python's ssl, curl) whose
 * plaintext unknown_ca must show in qsign serve's log and metrics as received.
 */
import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { PKI_FILES } from "../../src/pki/ca.ts";
import type { TlsClientConfig } from "../../src/tls/config.ts";
import { KeyShareHints } from "../../src/tls/groups.ts";
import { Daemon } from "../daemon/support.ts";
import { DENO, ROOT, runQsign, tempDir } from "../support/env.ts";
import { Peer } from "./support/peer.ts";
import { makePki, mutualTlsClient, mutualTlsServer, type TestPki } from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

const BUN = `${ROOT}/.tools/node_modules/.bin/bun`;
const payload = new TextEncoder().encode("peer interop");

function clientConfig(pki: TestPki, extra: Partial<TlsClientConfig> = {}): TlsClientConfig {
  return {
    ...mutualTlsClient(pki),
    ...extra,
  };
}

/** A peer process that prints JSON lines: the first (a server's port) and then events. */
class JsonProcess implements AsyncDisposable {
  readonly lines: Record<string, unknown>[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<void>;
  #wake: (() => void)[] = [];
  stderr = "";

  constructor(command: string, args: string[]) {
    this.#child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#done = Promise.all([this.#read(), this.#readStderr()]).then(() => {});
  }

  async #read(): Promise<void> {
    let buffered = "";
    for await (const text of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += text;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        this.lines.push(JSON.parse(buffered.slice(0, nl)));
        buffered = buffered.slice(nl + 1);
      }
      this.#wake.splice(0).forEach((w) => w());
    }
    this.#wake.splice(0).forEach((w) => w());
  }

  async #readStderr(): Promise<void> {
    for await (const text of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      this.stderr += text;
    }
  }

  /** The first line matching `match`, waiting (bounded) for it. */
  async line(
    match: (l: Record<string, unknown>) => boolean,
    timeoutMs = 20_000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no such line; got ${JSON.stringify(this.lines)} ${this.stderr}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 500));
        this.#wake.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // exited
    }
    await this.#child.status;
    await this.#done;
  }
}

/** Runs a one-shot peer client and returns its JSON result. */
async function oneShot(command: string, args: string[]): Promise<Record<string, unknown>> {
  await using p = new JsonProcess(command, args);
  return await p.line(() => true, 30_000);
}

const bunArgs = (options: Record<string, unknown>) => [
  `${ROOT}/tests/tls/peer/node_tls.mjs`,
  JSON.stringify(options),
];
const denoArgs = (options: Record<string, unknown>) => [
  "run",
  "--allow-net",
  `${ROOT}/tests/tls/peer/deno_tls.ts`,
  JSON.stringify(options),
];

Deno.test("OpenSSL 3.5: middlebox compatibility on and off, full and HelloRetryRequest", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(dir.path, "mldsa65");
  for (const peerCompat of [true, false]) {
    await using peer = new Peer({ middleboxCompat: peerCompat });
    const mode = `OpenSSL compat ${peerCompat ? "on" : "off"}`;
    const { server, port } = await peer.listen({
      ca: pki.rootPem,
      cert: pki.serverCertPem,
      key: pki.serverKeyPem,
      groups: ["SecP384r1MLKEM1024"],
      requestCert: true,
    });
    for (const qsignCompat of [true, false]) {
      for (const retry of [false, true]) {
        const name = `qsign client (compat ${qsignCompat ? "on" : "off"}) → ${mode} server, ${
          retry ? "HelloRetryRequest" : "full"
        }`;
        await t.step(name, async () => {
          const { info, echo } = await qsignEcho(
            port,
            clientConfig(pki, {
              middleboxCompat: qsignCompat,
              groups: retry ? ["X25519MLKEM768", "SecP384r1MLKEM1024"] : ["SecP384r1MLKEM1024"],
              // A fresh hint store: the HelloRetryRequest must happen every time.
              keyShareHints: new KeyShareHints(),
            }),
            payload,
          );
          equal(info.helloRetry, retry);
          equal(info.group, "SecP384r1MLKEM1024");
          equal(new TextDecoder().decode(echo), "peer interop");
        });
      }
    }
    const events = await peer.events(server);
    equal(events.filter((e) => e.event === "secure").length, 4, JSON.stringify(events));
    await peer.closeServer(server);

    await using qsign = new EchoServer(mutualTlsServer(pki));
    for (const retry of [false, true]) {
      await t.step(
        `${mode} client → qsign server, ${retry ? "HelloRetryRequest" : "full"}`,
        async () => {
          const before = qsign.outcomes.length;
          const r = await peer.connect(qsign.port, {
            ca: pki.rootPem,
            cert: pki.clientCertPem,
            key: pki.clientKeyPem,
            groups: retry ? ["X25519MLKEM768", "SecP384r1MLKEM1024"] : ["SecP384r1MLKEM1024"],
            servername: "localhost",
          }, { sendBytes: 1000 });
          equal(r.ok, true, JSON.stringify(r));
          equal(r.echoed, true);
          const outcome = (await qsign.waitFor(before + 1))[before];
          ok("info" in outcome, String("error" in outcome && outcome.error));
          equal(outcome.info.helloRetry, retry);
        },
      );
    }
  }
});

Deno.test("OpenSSL 3.5: rsa_pss_rsae_sha512 and rsa_pss_pss_sha512 both ways", async (t) => {
  await using dir = await tempDir();
  await using peer = new Peer();
  for (
    const [alg, scheme] of [["rsa-3072", "rsa_pss_rsae_sha512"], [
      "rsa-pss-3072",
      "rsa_pss_pss_sha512",
    ]] as const
  ) {
    const pki = await makePki(`${dir.path}/${alg}`, alg);
    await t.step(`qsign client → OpenSSL server, ${scheme}`, async () => {
      const { server, port } = await peer.listen({
        ca: pki.rootPem,
        cert: pki.serverCertPem,
        key: pki.serverKeyPem,
        sigalgs: [scheme],
        requestCert: true,
      });
      const { info } = await qsignEcho(
        port,
        clientConfig(pki, { signatureSchemes: [scheme] }),
        payload,
      );
      equal(info.peerSignatureScheme, scheme);
      const events = await peer.events(server);
      await peer.closeServer(server);
      equal(events[0]?.event, "secure", JSON.stringify(events));
    });
    await t.step(`OpenSSL client → qsign server, ${scheme}`, async () => {
      await using qsign = new EchoServer(mutualTlsServer(pki));
      const r = await peer.connect(qsign.port, {
        ca: pki.rootPem,
        cert: pki.clientCertPem,
        key: pki.clientKeyPem,
        sigalgs: [scheme],
        servername: "localhost",
      });
      equal(r.ok, true, JSON.stringify(r));
      const [outcome] = await qsign.waitFor(1);
      ok("info" in outcome, String("error" in outcome && outcome.error));
      equal(outcome.info.peerSignatureScheme, scheme);
      equal(outcome.info.signatureScheme, scheme);
    });
  }
});

Deno.test("BoringSSL (Bun): both directions, X25519MLKEM768, ECDSA and ML-DSA-65", async (t) => {
  await using dir = await tempDir();
  const cases: [string, "ecdsa-p384" | "mldsa65", string][] = [
    ["ECDSA P-384", "ecdsa-p384", "ecdsa_secp384r1_sha384"],
    ["ML-DSA-65", "mldsa65", "mldsa65"],
  ];
  for (const [name, alg, sigalg] of cases) {
    const pki = await makePki(`${dir.path}/${alg}`, alg);
    await t.step(`qsign client → Bun server, ${name}`, async () => {
      await using bun = new JsonProcess(
        BUN,
        bunArgs({
          role: "server",
          cert: pki.serverCertPem,
          key: pki.serverKeyPem,
          ca: pki.rootPem,
          requestCert: true,
          groups: ["X25519MLKEM768"],
          sigalgs: [sigalg],
        }),
      );
      const { port } = await bun.line((l) => "port" in l);
      // The server's group after a HelloRetryRequest is offered first the next time.
      const config = clientConfig(pki, { keyShareHints: new KeyShareHints() });
      const first = await qsignEcho(Number(port), config, payload);
      const { info, echo } = await qsignEcho(Number(port), config, payload);
      equal(first.info.helloRetry, true);
      equal(info.helloRetry, false);
      equal(info.group, "X25519MLKEM768");
      equal(info.peerSignatureScheme, sigalg);
      equal(new TextDecoder().decode(echo), "peer interop");
      await bun.line((l) => l.event === "secure");
    });
    await t.step(`Bun client → qsign server, ${name}`, async () => {
      await using qsign = new EchoServer(mutualTlsServer(pki));
      const r = await oneShot(
        BUN,
        bunArgs({
          role: "client",
          port: qsign.port,
          ca: pki.rootPem,
          cert: pki.clientCertPem,
          key: pki.clientKeyPem,
          servername: "localhost",
          groups: ["X25519MLKEM768"],
          sigalgs: [sigalg],
          message: "peer interop",
        }),
      );
      equal(r.ok, true, JSON.stringify(r));
      const [outcome] = await qsign.waitFor(1);
      ok("info" in outcome, String("error" in outcome && outcome.error));
      equal(outcome.info.group, "X25519MLKEM768");
      equal(outcome.info.peerSignatureScheme, sigalg);
    });
  }

  await t.step("qsign connect with the wrong --ca: Bun reports unknown ca", async () => {
    const pki = await makePki(`${dir.path}/ca-pki`, "ecdsa-p384");
    const stranger = await makePki(`${dir.path}/stranger`, "ecdsa-p384");
    await using bun = new JsonProcess(
      BUN,
      bunArgs({
        role: "server",
        cert: pki.serverCertPem,
        key: pki.serverKeyPem,
        groups: ["X25519MLKEM768"],
      }),
    );
    const { port } = await bun.line((l) => "port" in l);
    const result = await runQsign([
      "connect",
      `127.0.0.1:${port}`,
      "--servername",
      "localhost",
      "--ca",
      join(stranger.dir, PKI_FILES.rootCert),
      "--send",
      "hello",
    ]);
    ok(result.code !== 0, result.stdout);
    match(result.stderr, /unknown_ca/);
    const error = await bun.line((l) => l.event === "tls-error");
    match(String(error.message ?? error.code), /unknown.?ca/i);
  });
});

Deno.test("rustls (Deno's built-in TLS): both directions", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(dir.path, "ecdsa-p384");
  await t.step("qsign client → rustls server", async () => {
    await using server = new JsonProcess(
      DENO,
      denoArgs({
        role: "server",
        cert: pki.serverCertPem,
        key: pki.serverKeyPem,
      }),
    );
    const { port } = await server.line((l) => "port" in l);
    // rustls prefers X25519MLKEM768: a HelloRetryRequest the first time, none the next.
    const config = clientConfig(pki, { keyShareHints: new KeyShareHints() });
    const first = await qsignEcho(Number(port), config, payload);
    const { info, echo } = await qsignEcho(Number(port), config, payload);
    equal(first.info.helloRetry, true);
    equal(info.helloRetry, false);
    equal(info.group, "X25519MLKEM768");
    equal(info.peerSignatureScheme, "ecdsa_secp384r1_sha384");
    equal(new TextDecoder().decode(echo), "peer interop");
  });
  await t.step("rustls client → qsign server, mutual TLS", async () => {
    await using qsign = new EchoServer(mutualTlsServer(pki));
    const r = await oneShot(
      DENO,
      denoArgs({
        role: "client",
        port: qsign.port,
        ca: pki.rootPem,
        cert: pki.clientCertPem,
        key: pki.clientKeyPem,
        message: "peer interop",
      }),
    );
    equal(r.ok, true, JSON.stringify(r));
    const [outcome] = await qsign.waitFor(1);
    ok("info" in outcome, String("error" in outcome && outcome.error));
    equal(outcome.info.group, "X25519MLKEM768");
    equal(outcome.info.peerSignatureScheme, "ecdsa_secp384r1_sha384");
  });
});

Deno.test("OpenSSL 3.0 clients (Python ssl, curl) with the wrong CA: qsign serve logs and counts unknown_ca received", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "ecdsa-p384");
  const stranger = await makePki(`${dir.path}/stranger`, "ecdsa-p384");
  const file = (name: string) => join(pki.dir, name);
  await using daemon = await Daemon.start([
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--cert",
    file(PKI_FILES.serverCert),
    "--key",
    file(PKI_FILES.serverKey),
    "--ca",
    file(PKI_FILES.rootCert),
    "--allow-classical",
  ]);
  const port = daemon.port();
  const wrongCa = join(stranger.dir, PKI_FILES.rootCert);
  const python = await new Deno.Command("python3", {
    args: [
      "-c",
      `import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
        ctx.wrap_socket(raw, server_hostname="localhost")
    print("connected")
except ssl.SSLCertVerificationError as e:
    print("refused", e.verify_message)`,
      wrongCa,
      String(port),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  match(new TextDecoder().decode(python.stdout), /^refused/);
  const curl = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--cacert",
      wrongCa,
      `https://localhost:${port}/`,
      "--resolve",
      `localhost:${port}:127.0.0.1`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  equal(curl.success, false);
  match(new TextDecoder().decode(curl.stderr), /certificate/i);

  const failures = await daemon.waitForCount((e) => e.event === "handshake_failed", 2);
  for (const event of failures) {
    equal(event.alert, "unknown_ca", JSON.stringify(event));
    equal(event.sent, false);
    match(String(event.reason), /does not trust/);
  }
  const metrics = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
  const line = metrics.split("\n").find((l) =>
    l.startsWith("qtls_handshake_failures_total{") && l.includes('reason="unknown_ca"')
  );
  ok(line, metrics);
  equal(Number(line!.split(" ").at(-1)), 2);
});
