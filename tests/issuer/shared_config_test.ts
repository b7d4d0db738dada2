/**
 * One qsign.toml for every command: `qsign serve --check-config` and `qsign renew` read the same
 * file through the same reader (src/config/file.ts), each taking its own sections and both
 * rejecting what neither knows, with the same file/field and line/column messages.
 */
import { equal, match } from "node:assert/strict";
import { join } from "node:path";
import { generateCrl } from "../../src/pki/ca.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import { ROOT, runQsign, tempDir } from "../support/env.ts";
import { makePki } from "../daemon/support.ts";

function lines(stdout: string) {
  return stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

Deno.test("services, [renewal] and [[certificate]] in one file: serve and renew both accept it", async () => {
  await using dir = await tempDir();
  await makePki(join(dir.path, "pki"));
  const config = join(dir.path, "qsign.toml");
  await Deno.writeTextFile(
    config,
    `pid_file = "qsign.pid"
metrics_listen = "127.0.0.1:0"
drain_timeout = "5s"

[renewal]
ca_dir = "pki"
renew_before = "25%"

[[service]]
name = "front"
listen = "127.0.0.1:0"
cert = "front.crt"
key = "front.key"
ca = "pki/root-ca.crt"

[[service]]
name = "client-facing"
listen = "127.0.0.1:0"
mode = "echo"
cert = ["front.crt", "client-facing.crt"]
key = ["front.key", "client-facing.key"]
client_auth = "none"

[[certificate]]
name = "front"
cert = "front.crt"
key = "front.key"
cn = "front.qsign.local"
ttl = "24h"

[[certificate]]
name = "client-facing"
cert = "client-facing.crt"
key = "client-facing.key"
chain = "client-facing-chain.pem"
cn = "client-facing.qsign.local"
sans = ["client-facing.qsign.local", "localhost"]
key_algorithm = "ecdsa-p384"
ttl = "72h"
`,
  );
  const renew = await runQsign(["renew", "--config", config]);
  equal(renew.code, 0, renew.stderr);
  equal(
    lines(renew.stdout).map((l) => `${l.certificate} ${l.result} ${l.reason}`).join("; "),
    "front renewed missing; client-facing renewed missing",
  );
  match(renew.stderr, /no daemon to reload: none holds .*qsign\.pid/);

  const check = await runQsign(["serve", "--config", config, "--check-config"]);
  equal(check.code, 0, check.stderr);
  match(check.stdout, /service front: echo on 127\.0\.0\.1:0, CN=front\.qsign\.local/);
  match(check.stdout, /service client-facing: .*CN=client-facing\.qsign\.local/);
  match(check.stdout, /configuration OK/);
});

Deno.test("a syntax error or an unknown key gets the same message from serve and renew", async () => {
  await using dir = await tempDir();
  const config = join(dir.path, "qsign.toml");
  const cases: [string, RegExp][] = [
    [
      "[[service]]\nlisten = '127.0.0.1:0'\n[[certificate]]\ncn = \n",
      /qsign\.toml: line 4 column \d+: /,
    ],
    ["[[certificate]]\ncn = 'a'\n[renewals]\nca_dir = 'pki'\n", /qsign\.toml: renewals: unknown/],
  ];
  for (const [text, message] of cases) {
    await Deno.writeTextFile(config, text);
    for (const args of [["serve", "--check-config"], ["renew"]]) {
      const result = await runQsign([...args, "--config", config]);
      equal(result.code, 2, `${args[0]}: ${result.stderr}`);
      match(result.stderr, message, args[0]);
    }
  }
});

Deno.test("the sample deploy/qsign.toml serves and renews the same certificate", async () => {
  await using dir = await tempDir();
  const etc = join(dir.path, "etc", "qsign");
  // The layout of docs/production.md: the CA in ca/, what the daemon serves in certs/.
  const pki = await makePki(join(etc, "ca"));
  const certs = join(etc, "certs");
  await Deno.mkdir(certs);
  await Deno.copyFile(pki.serverCert, join(certs, "server.crt"));
  await Deno.copyFile(pki.serverKey, join(certs, "server.key"));
  await Deno.copyFile(pki.root, join(certs, "root-ca.crt"));
  const crl = await generateCrl({ dir: pki.dir, profile: "client" });
  await Deno.writeTextFile(join(certs, "client-ca.crl"), pemEncode("X509 CRL", crl));
  const config = join(etc, "qsign.toml");
  await Deno.copyFile(join(ROOT, "deploy", "qsign.toml"), config);

  // `qsign pki init` made a one-year server certificate, and the CRL is new: nothing is due.
  const fresh = await runQsign(["--renewal"], { env: { QSIGN_CONFIG: config } });
  equal(fresh.code, 0, fresh.stderr);
  equal(lines(fresh.stdout).map((l) => l.result).join(), "fresh,fresh");

  const forced = await runQsign(["--renewal", "--force"], { env: { QSIGN_CONFIG: config } });
  equal(forced.code, 0, forced.stderr);
  const [renewed, refreshed] = lines(forced.stdout);
  equal(renewed.result, "renewed");
  equal(refreshed.result, "refreshed");
  equal(refreshed.crl, join(certs, "client-ca.crl"));

  const check = await runQsign(["serve", "--config", config, "--check-config"]);
  equal(check.code, 0, check.stderr);
  match(check.stdout, /service api: proxy on 0\.0\.0\.0:8443, CN=qtls-server\.qsign\.local/);
  match(check.stdout, /service demo: echo on 127\.0\.0\.1:8444/);
  const until = new Date(renewed.not_after).toISOString();
  match(check.stdout, new RegExp(`until ${until.replace(/[.]/g, "\\.")}`));
});
