/** Renewal planning: when a certificate is due, and the config that says so. */
import { deepEqual, equal, rejects } from "node:assert/strict";
import { planRenewal } from "../../src/issuer/renewal.ts";
import { loadRenewalConfig } from "../../src/issuer/config.ts";
import { parseCommand } from "../../src/cli/args.ts";
import { RENEW_COMMAND } from "../../src/cli/renew.ts";
import { ConfigError } from "../../src/errors.ts";
import { tempDir } from "../support/env.ts";

const HOUR = 3600_000;
const issued = new Date("2025-01-01T00:00:00Z");
const day = { serial: "01", notBefore: issued, notAfter: new Date(issued.getTime() + 24 * HOUR) };
const at = (hours: number) => new Date(issued.getTime() + hours * HOUR);

Deno.test("a 24 h certificate is due once less than a third of it is left", () => {
  const third = { fraction: 1 / 3 };
  deepEqual(planRenewal(day, third, at(1)), { due: false, reason: "fresh", dueAt: at(16) });
  equal(planRenewal(day, third, at(15.99)).due, false);
  deepEqual(planRenewal(day, third, at(16)), { due: true, reason: "expiring", dueAt: at(16) });
  equal(planRenewal(day, third, at(30)).reason, "expiring"); // already expired
});

Deno.test("renew_before as a duration, --force, and a missing certificate", () => {
  equal(planRenewal(day, { seconds: 2 * 3600 }, at(21.9)).due, false);
  equal(planRenewal(day, { seconds: 2 * 3600 }, at(22)).due, true);
  deepEqual(planRenewal(day, { fraction: 1 / 3 }, at(1), true), { due: true, reason: "forced" });
  deepEqual(planRenewal(undefined, { fraction: 1 / 3 }, at(1)), { due: true, reason: "missing" });
});

async function configFrom(
  name: string,
  text: string,
  env: Record<string, string> = {},
  argv: string[] = [],
) {
  await using dir = await tempDir();
  const file = `${dir.path}/${name}`;
  await Deno.writeTextFile(file, text);
  const flags = parseCommand(RENEW_COMMAND, argv)!;
  return { dir: dir.path, config: await loadRenewalConfig(file, { flags, env }) };
}

Deno.test("[renewal] and [[certificate]] are read beside the daemon's settings (TOML)", async () => {
  const { dir, config } = await configFrom(
    "qsign.toml",
    `
metrics_listen = "127.0.0.1:9090"
pid_file = "/run/qsign/qsign.pid"
[renewal]
renew_before = "25%"
ca_dir = "pki"
[renewal.vault]
role_id = "file:///etc/qtls/role_id"
secret_id = "credential:vault-secret-id"
[[service]]
listen = ":8443"
[[certificate]]
cert = "server.crt"
key = "server.key"
cn = "qtls-server.qsign.local"
sans = ["qtls-server.qsign.local", "127.0.0.1", "spiffe://qsign/server"]
ttl = "24h"
[[certificate]]
name = "hsm-client"
cert = "client.crt"
issuer = "vault"
profile = "client"
cn = "client.qsign.local"
ttl = "72h"
key_source = "hsm:qtls-client"
renew_before = "8h"
[renewal.hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = "qsign"
pin = "env:HSM_PIN"
`,
    { VAULT_ADDR: "https://vault.example:8200" },
  );
  equal(config.pidFile, "/run/qsign/qsign.pid");
  equal(config.caDir, `${dir}/pki`);
  const [server, client] = config.certificates;
  deepEqual(server.paths, {
    cert: `${dir}/server.crt`,
    key: `${dir}/server.key`,
    chain: undefined,
  });
  deepEqual(server.sans, [
    "DNS:qtls-server.qsign.local",
    "IP:127.0.0.1",
    "URI:spiffe://qsign/server",
  ]);
  deepEqual(server.renewBefore, { fraction: 0.25 });
  equal(server.ttlSeconds, 86400);
  deepEqual(server.keySource, { kind: "new" });
  deepEqual(client.keySource, { kind: "hsm", label: "qtls-client" });
  deepEqual(client.renewBefore, { seconds: 8 * 3600 });
  equal(config.vault?.address, "https://vault.example:8200");
  deepEqual(config.vault?.auth, {
    method: "approle",
    roleId: { ref: "file:///etc/qtls/role_id", field: "renewal.vault.role_id" },
    secretId: { ref: "credential:vault-secret-id", field: "renewal.vault.secret_id" },
    mount: undefined,
  });
  deepEqual(config.vault?.roles, { server: "qtls-server", client: "qtls-client" });
});

Deno.test("YAML works too, and Vault's token defaults to env:VAULT_TOKEN", async () => {
  const { config } = await configFrom(
    "qsign.yaml",
    "renewal:\n  vault:\n    address: http://127.0.0.1:8200\ncertificate:\n" +
      "  - {cert: /tmp/a.crt, key: /tmp/a.key, issuer: vault, cn: a.qsign.local, ttl: 1h}\n",
  );
  deepEqual(config.vault?.auth, {
    method: "token",
    token: { ref: "env:VAULT_TOKEN", field: "renewal.vault.token" },
  });
  deepEqual(config.certificates[0].renewBefore, { fraction: 1 / 3 });
});

Deno.test("configuration errors name the file and the field", async () => {
  const cases: [string, RegExp][] = [
    [
      "[[certificate]]\ncert = 'a.crt'\nkey = 'a.key'\ncn = 'a'\n",
      /certificate\[0\]\.ttl: is required/,
    ],
    ["[[certificate]]\ncert='a.crt'\ncn='a'\nttl='1h'\n", /certificate\[0\]\.key: is required/],
    ["[renewal]\nrenew_before = 1.5\n", /renewal\.renew_before: as a share of the lifetime/],
    ["[renewal]\npidfile = 'x'\n", /renewal\.pidfile: unknown setting/],
    ["[renewal]\npid_file = 'x'\n", /renewal\.pid_file: pid_file is shared with qsign serve/],
    ["pid_file = ['a']\n", /qsign\.toml: pid_file: must be a string, got a list/],
    ["[[service]]\nlisten = ':1'\nkye = 'a'\n", /service\[0\]\.kye: unknown setting/],
    ["[[certificate]]\ncert = 'a'\n[certificat]\n", /certificat: unknown setting/],
    [
      "[[certificate]]\ncert='a.crt'\nkey='a.key'\ncn='a'\nttl='1h'\nkey_source='old'\n",
      /certificate\[0\]\.key_source: must be new, reuse or hsm:LABEL/,
    ],
    [
      "[[certificate]]\ncert='a.crt'\nkey='a.key'\ncn='a'\nttl='1h'\n",
      /renewal\.ca_dir: is needed by certificate\[0\]/,
    ],
    [
      "[[certificate]]\ncert='a.crt'\nkey='a.key'\ncn='a'\nttl='1h'\nsans=['DNS:-bad-']\n",
      /sans\[0\]/,
    ],
    ["[renewal\n", /qsign\.toml: line 1 column \d+/],
  ];
  for (const [text, message] of cases) {
    await rejects(configFrom("qsign.toml", text), (e) => {
      equal(e instanceof ConfigError, true, String(e));
      equal((e as ConfigError).exitCode, 2);
      return message.test((e as Error).message) && (e as Error).message.includes("qsign.toml");
    }, `expected ${message}`);
  }
});

Deno.test("pid_file: --pid-file over QSIGN_PID_FILE over the file's top-level key", async () => {
  const text = "pid_file = 'run/qsign.pid'\n";
  const fromFile = await configFrom("qsign.toml", text);
  equal(fromFile.config.pidFile, `${fromFile.dir}/run/qsign.pid`);
  const fromEnv = await configFrom("qsign.toml", text, { QSIGN_PID_FILE: "/env.pid" });
  equal(fromEnv.config.pidFile, "/env.pid");
  const fromFlag = await configFrom("qsign.toml", text, { QSIGN_PID_FILE: "/env.pid" }, [
    "--pid-file",
    "/flag.pid",
  ]);
  equal(fromFlag.config.pidFile, "/flag.pid");
  equal((await configFrom("qsign.toml", "")).config.pidFile, undefined);
});

Deno.test("a YAML syntax error names the file, line and column", async () => {
  await rejects(
    configFrom("qsign.yaml", "renewal:\n  ca_dir: [unclosed\n"),
    /qsign\.yaml: line \d+ column \d+: /,
  );
});
