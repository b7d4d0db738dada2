/**
 * The sample deploy/qsign.toml runs as shipped after the setup docs/production.md documents
 * (pki init with an offline root, pki issue, the root and the client CA's CRL into certs/): only
 * the addresses and the pid file are moved into a temp dir, and a client of the `payments` OU
 * gets through both services. A pid file that cannot be written stops the start before anything
 * listens; `--check-config` refuses listen addresses nobody can resolve and requirements no
 * certificate can meet.
 */
import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { ROOT, runQsign, tempDir } from "../support/env.ts";
import { Daemon, exchange, type Pki, qsignClient } from "./support.ts";

const PASSPHRASE = { QSIGN_TEST_CA_PASSPHRASE: "correct horse battery staple" };
const CA_ENV = { ...PASSPHRASE, QSIGN_CA_PASSPHRASE: "env:QSIGN_TEST_CA_PASSPHRASE" };

async function qsign(args: string[], env: Record<string, string> = CA_ENV): Promise<string> {
  const result = await runQsign(args, { env });
  equal(result.code, 0, `qsign ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** The documented setup under `root` (for /etc/qsign and the offline medium). */
async function documentedSetup(root: string): Promise<{ etc: string; client: Pki }> {
  const etc = join(root, "etc/qsign");
  await Deno.mkdir(join(etc, "certs"), { recursive: true });
  await qsign([
    "pki",
    "init",
    "--dir",
    join(etc, "ca"),
    "--root-dir",
    join(root, "media/root-ca"),
    "--passphrase",
    "env:QSIGN_TEST_CA_PASSPHRASE",
  ], PASSPHRASE);
  // The daemon's name here is localhost, where the test client connects.
  await qsign([
    "pki",
    "issue",
    "--dir",
    join(etc, "ca"),
    "--profile",
    "server",
    "--cn",
    "localhost",
    "--san",
    "DNS:localhost",
    "--san",
    "IP:127.0.0.1",
    "--out",
    join(etc, "certs/server"),
  ]);
  await Deno.copyFile(join(etc, "ca/root-ca.crt"), join(etc, "certs/root-ca.crt"));
  await qsign([
    "pki",
    "crl",
    "--dir",
    join(etc, "ca"),
    "--ca",
    "client",
    "--out",
    join(etc, "certs/client-ca.crl"),
  ]);
  // A client the api service's allow_ou = ["payments"] admits.
  await qsign([
    "pki",
    "issue",
    "--dir",
    join(etc, "ca"),
    "--profile",
    "client",
    "--cn",
    "gateway.example.internal",
    "--ou",
    "payments",
    "--out",
    join(root, "gateway"),
  ]);
  return {
    etc,
    client: {
      dir: join(etc, "ca"),
      root: join(etc, "certs/root-ca.crt"),
      serverCert: join(etc, "certs/server.crt"),
      serverKey: join(etc, "certs/server.key"),
      clientCert: join(root, "gateway.crt"),
      clientKey: join(root, "gateway.key"),
    },
  };
}

/** The sample with `replacements` applied (each must match once), written to `etc/qsign.toml`. */
async function sampleCopy(etc: string, replacements: [string, string][]): Promise<string> {
  let text = await Deno.readTextFile(join(ROOT, "deploy/qsign.toml"));
  for (const [from, to] of replacements) {
    equal(text.split(from).length, 2, `the sample has exactly one ${from}`);
    text = text.replace(from, to);
  }
  const file = join(etc, "qsign.toml");
  await Deno.writeTextFile(file, text);
  return file;
}

/** A plaintext backend on 127.0.0.1: reads the PROXY v2 header, answers `backend: <payload>`. */
function proxyBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const headers: Uint8Array[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      void (async () => {
        const buffer = new Uint8Array(4096);
        let filled = 0;
        try {
          // Signature (12 bytes), version/command, family, then a 2-byte length.
          while (filled < 16 || filled < 16 + ((buffer[14] << 8) | buffer[15])) {
            const n = await conn.read(buffer.subarray(filled));
            if (n === null) return;
            filled += n;
          }
          const headerLength = 16 + ((buffer[14] << 8) | buffer[15]);
          headers.push(buffer.slice(0, headerLength));
          let payload = buffer.slice(headerLength, filled);
          if (payload.length === 0) {
            const n = await conn.read(buffer);
            payload = n === null ? new Uint8Array() : buffer.slice(0, n);
          }
          await conn.write(
            new TextEncoder().encode(`backend: ${new TextDecoder().decode(payload)}`),
          );
        } finally {
          conn.close();
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    headers,
    async close() {
      listener.close();
      await serving;
    },
  };
}

Deno.test("the sample qsign.toml serves as shipped after the documented setup", async () => {
  await using dir = await tempDir();
  const { etc, client } = await documentedSetup(dir.path);
  const backend = proxyBackend();
  try {
    await Deno.mkdir(join(dir.path, "run"));
    const config = await sampleCopy(etc, [
      ['metrics_listen = "127.0.0.1:9090"', 'metrics_listen = "127.0.0.1:0"'],
      ['pid_file = "/run/qsign/qsign.pid"', `pid_file = "${dir.path}/run/qsign.pid"`],
      ['listen = "0.0.0.0:8443"', 'listen = "127.0.0.1:0"'],
      ['listen = "127.0.0.1:8444"', 'listen = "127.0.0.1:0"'],
      ['target = "127.0.0.1:8080"', `target = "127.0.0.1:${backend.port}"`],
    ]);
    const checked = await runQsign(["serve", "--config", config, "--check-config"]);
    equal(checked.code, 0, checked.stderr);
    match(checked.stdout, /configuration OK/);

    await using daemon = await Daemon.start(["--config", config]);
    ok((await Deno.stat(join(dir.path, "run/qsign.pid"))).isFile);
    const api = await qsignClient(client, daemon.port("api"));
    try {
      equal(await exchange(api, "hello"), "backend: hello");
    } finally {
      await api.close();
    }
    equal(
      new TextDecoder("latin1").decode(backend.headers[0].subarray(0, 12)),
      "\r\n\r\n\0\r\nQUIT\n",
    );
    const demo = await qsignClient(client, daemon.port("demo"));
    try {
      equal(await exchange(demo, "hi"), "QSIGN 서버 응답 [세션 #2]: 메시지 수신 완료 (2 바이트)\n");
    } finally {
      await demo.close();
    }
    // The renewal half of the same file reads it too: the [[crl]] is fresh.
    const renew = await runQsign(["renew", "--config", config, "--dry-run"], {
      env: CA_ENV,
    });
    equal(renew.code, 0, renew.stderr);
  } finally {
    await backend.close();
  }
});

Deno.test("a pid file that cannot be written stops the start before anything listens", async () => {
  await using dir = await tempDir();
  const { etc } = await documentedSetup(dir.path);
  // As shipped, outside systemd: /run/qsign does not exist.
  const config = await sampleCopy(etc, [
    ['pid_file = "/run/qsign/qsign.pid"', `pid_file = "${dir.path}/missing/qsign.pid"`],
    ['listen = "0.0.0.0:8443"', 'listen = "127.0.0.1:0"'],
    ['listen = "127.0.0.1:8444"', 'listen = "127.0.0.1:0"'],
    ['metrics_listen = "127.0.0.1:9090"', 'metrics_listen = "127.0.0.1:0"'],
  ]);
  const checked = await runQsign(["serve", "--config", config, "--check-config"]);
  equal(checked.code, 0, checked.stderr);
  match(checked.stderr, /warning: pid_file: .*missing does not exist.*RuntimeDirectory=/);
  const result = await runQsign(["serve", "--config", config]);
  equal(result.code, 1, result.stderr);
  match(result.stderr, /pid_file: cannot write .*missing\/qsign\.pid.*RuntimeDirectory=/);
  ok(!result.stdout.includes('"listening"'), result.stdout);
  ok(!result.stderr.includes("port "), `no banner: ${result.stderr}`);
  ok(!result.stderr.includes("    at "), result.stderr);
});

Deno.test("--check-config refuses unresolvable listen addresses and requirements no certificate meets", async () => {
  await using dir = await tempDir();
  const { etc } = await documentedSetup(dir.path);
  const base: [string, string][] = [
    ['pid_file = "/run/qsign/qsign.pid"', `pid_file = "${dir.path}/qsign.pid"`],
  ];
  const check = async (replacements: [string, string][]) => {
    const config = await sampleCopy(etc, [...base, ...replacements]);
    return await runQsign(["serve", "--config", config, "--check-config"]);
  };

  const unresolvable = await check([['listen = "0.0.0.0:8443"', 'listen = "nosuch.invalid:8443"']]);
  equal(unresolvable.code, 2, unresolvable.stderr);
  match(
    unresolvable.stderr,
    /service\[0\]\.listen.*"nosuch\.invalid" is neither an IP address nor a name this host resolves/,
  );
  const named = await check([['listen = "127.0.0.1:8444"', 'listen = "localhost:8444"']]);
  equal(named.code, 0, named.stderr);

  const chainWithoutRoot = await check([
    ['client_auth = "require"', 'client_auth = "require"\ncrl_check = "chain"'],
  ]);
  equal(chainWithoutRoot.code, 2, chainWithoutRoot.stderr);
  match(chainWithoutRoot.stderr, /crl_check.*"chain" needs a CRL from the root too/);

  // A classical root under require_pq_auth: no client chain can be post-quantum.
  const classical = join(dir.path, "classical");
  await qsign(["pki", "init", "--dir", classical, "--alg", "ecdsa-p256"], {});
  const classicalRoot = await check([
    [
      'ca = "certs/root-ca.crt"            # roots',
      `ca = "${classical}/root-ca.crt"            # roots`,
    ],
  ]);
  equal(classicalRoot.code, 2, classicalRoot.stderr);
  match(classicalRoot.stderr, /require_pq_auth.*no client chain can meet it: every root in ca/);
  ok(!classicalRoot.stderr.includes("    at "), classicalRoot.stderr);
});
