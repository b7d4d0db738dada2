/**
 * Configuration: flags over QSIGN_* variables over the config file over defaults; TOML and YAML
 * with several services; every error names the field and the file.
 */
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { parseCommand } from "../../src/cli/args.ts";
import { SERVE_COMMAND } from "../../src/cli/serve.ts";
import { type ConfigSources, loadDaemonConfig } from "../../src/config/load.ts";
import { ConfigError } from "../../src/errors.ts";
import { loadServiceMaterials } from "../../src/daemon/materials.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { makePki } from "./support.ts";

function sources(argv: string[], env: Record<string, string> = {}): ConfigSources {
  return { flags: parseCommand(SERVE_COMMAND, argv)!, env };
}

/** Loads and expects a ConfigError whose field and file are as given. */
async function expectError(
  source: ConfigSources,
  field: string,
  file: string | undefined,
  problem: RegExp,
): Promise<void> {
  await rejects(loadDaemonConfig(source), (e) => {
    ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    equal(e.field, field);
    equal(e.file, file);
    match(e.message, problem);
    if (file) ok(e.message.startsWith(`${file}: ${field}: `), e.message);
    return true;
  });
}

const MINIMAL = ["--cert", "s.crt", "--key", "s.key", "--ca", "ca.crt"];

Deno.test("flags override QSIGN_* variables, which override the file, which overrides defaults", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/qsign.toml`;
  await Deno.writeTextFile(
    file,
    `drain_timeout = "7s"
[[service]]
listen = "127.0.0.1:1111"
cert = "s.crt"
key = "s.key"
ca = "ca.crt"
allow_cn = ["from-file"]
[service.limits]
max_connections = 5
idle_timeout = 90
`,
  );
  const env = { QSIGN_LISTEN: ":2222", QSIGN_ALLOW_CN: "env-a, env-b", QSIGN_DRAIN_TIMEOUT: "1m" };
  const flagged = await loadDaemonConfig(
    sources(["--config", file, "--listen", "[::1]:3333"], env),
  );
  deepEqual(flagged.services[0].listen, { hostname: "::1", port: 3333 });
  deepEqual(flagged.services[0].allow.cn, ["env-a", "env-b"]);
  equal(flagged.drainTimeoutMs, 60_000);

  const fromEnv = await loadDaemonConfig(sources(["--config", file], env));
  deepEqual(fromEnv.services[0].listen, { hostname: "0.0.0.0", port: 2222 });

  const fromFile = await loadDaemonConfig(sources(["--config", file]));
  const service = fromFile.services[0];
  deepEqual(service.listen, { hostname: "127.0.0.1", port: 1111 });
  deepEqual(service.allow.cn, ["from-file"]);
  equal(service.limits.maxConnections, 5);
  equal(service.limits.idleTimeoutMs, 90_000);
  equal(fromFile.drainTimeoutMs, 7_000);
  // Relative paths in a file are relative to the file.
  deepEqual(service.cert, [`${dir.path}/s.crt`]);
  deepEqual(service.origins.listen, { field: "service[0].listen", file });

  const defaults = await loadDaemonConfig(sources(MINIMAL));
  deepEqual(defaults.services[0].listen, { hostname: "0.0.0.0", port: 8443 });
  deepEqual(defaults.metricsListen, { hostname: "127.0.0.1", port: 9090 });
  equal(defaults.services[0].mode, "echo");
  equal(defaults.services[0].clientAuth, "require");
  equal(defaults.services[0].limits.handshakeTimeoutMs, 10_000);
  equal(defaults.logLevel, "INFO");
  equal((await loadDaemonConfig(sources(MINIMAL, { QTLS_LOG_LEVEL: "debug" }))).logLevel, "DEBUG");
  equal(
    (await loadDaemonConfig(sources([...MINIMAL, "--metrics-listen", "off"]))).metricsListen,
    undefined,
  );
  // QSIGN_CONFIG names the file when --config does not.
  equal((await loadDaemonConfig(sources([], { QSIGN_CONFIG: file }))).file, file);
});

Deno.test("TOML and YAML files declare several services, each with its own settings", async () => {
  await using dir = await tempDir();
  const toml = `${dir.path}/qsign.toml`;
  await Deno.writeTextFile(
    toml,
    `metrics_listen = "127.0.0.1:9999"
[[service]]
name = "api"
listen = ":8443"
mode = "proxy"
target = "127.0.0.1:8080"
proxy_protocol = true
cert = ["a.crt", "b.crt"]
key = ["a.key", "b.key"]
ca = "ca.crt"
crl = ["client-ca.crl", "root-ca.crl"]
crl_check = "chain"
groups = ["x25519mlkem768", "SecP384r1MLKEM1024"]

[[service]]
name = "demo"
listen = ":8444"
lang = "en"
cert = "d.crt"
client_auth = "none"
[service.hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "qsign"
key_label = "server"
pin = "env:PIN"
composite_mldsa_key = "keys/server-mldsa.key"
`,
  );
  const yaml = `${dir.path}/qsign.yaml`;
  await Deno.writeTextFile(
    yaml,
    `metrics_listen: 127.0.0.1:9999
service:
  - name: api
    listen: ":8443"
    mode: proxy
    target: 127.0.0.1:8080
    proxy_protocol: true
    cert: [a.crt, b.crt]
    key: [a.key, b.key]
    ca: ca.crt
    crl: [client-ca.crl, root-ca.crl]
    crl_check: chain
    groups: [x25519mlkem768, SecP384r1MLKEM1024]
  - name: demo
    listen: ":8444"
    lang: en
    cert: d.crt
    client_auth: none
    hsm:
      module: /usr/lib/softhsm/libsofthsm2.so
      token_label: qsign
      key_label: server
      pin: "env:PIN"
      composite_mldsa_key: keys/server-mldsa.key
`,
  );
  const fromToml = await loadDaemonConfig(sources(["--config", toml]));
  const fromYaml = await loadDaemonConfig(sources(["--config", yaml]));
  const strip = (c: typeof fromToml) => c.services.map(({ origins: _, ...s }) => s);
  deepEqual(strip(fromToml), strip(fromYaml));
  const [api, demo] = fromToml.services;
  equal(api.mode, "proxy");
  deepEqual(api.target, { hostname: "127.0.0.1", port: 8080 });
  deepEqual(api.groups, ["X25519MLKEM768", "SecP384r1MLKEM1024"]);
  equal(api.cert.length, 2);
  equal(api.crlCheck, "chain");
  equal(demo.crlCheck, "available", "the default");
  equal(demo.lang, "en");
  deepEqual(demo.hsm, {
    module: "/usr/lib/softhsm/libsofthsm2.so",
    token: "qsign",
    slot: undefined,
    keyLabel: "server",
    keyId: undefined,
    pin: "env:PIN",
    sessions: undefined,
    compositeMldsaKey: `${dir.path}/keys/server-mldsa.key`,
  });
  deepEqual(demo.origins["hsm.composite_mldsa_key"], {
    field: "service[1].hsm.composite_mldsa_key",
    file: toml,
  });
  // The flag and its variable reach the HSM settings too, and the CRL policy likewise.
  const hsmFlags = ["--cert", "s.crt", "--ca", "ca.crt", "--hsm", "--hsm-slot", "0"];
  const viaFlag = await loadDaemonConfig(
    sources([...hsmFlags, "--hsm-key-id", "01", "--hsm-composite-mldsa-key", "/k/m.key"], {
      QSIGN_CRL_CHECK: "leaf",
    }),
  );
  equal(viaFlag.services[0].hsm?.compositeMldsaKey, "/k/m.key");
  deepEqual(viaFlag.services[0].origins["hsm.composite_mldsa_key"], {
    field: "--hsm-composite-mldsa-key",
  });
  equal(viaFlag.services[0].crlCheck, "leaf");
  const viaEnv = await loadDaemonConfig(
    sources([...hsmFlags, "--hsm-key-id", "01", "--crl-check", "chain"], {
      QSIGN_HSM_COMPOSITE_MLDSA_KEY: "/k/env.key",
      QSIGN_CRL_CHECK: "leaf",
    }),
  );
  equal(viaEnv.services[0].hsm?.compositeMldsaKey, "/k/env.key");
  equal(viaEnv.services[0].crlCheck, "chain", "the flag over the variable");
  // A flag applies to every service.
  const loosened = await loadDaemonConfig(sources(["--config", toml, "--allow-classical"]));
  ok(loosened.services.every((s) => s.allowClassical));
});

Deno.test("every config-file error names the field and the file", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/qsign.toml`;
  const cases: [string, string, RegExp][] = [
    [`[[service]]\nlisen = ":1"`, "service[0].lisen", /unknown setting \(did you mean listen\?\)/],
    [
      `[[service]]\n[service.limits]\nmax_connections = "many"`,
      "service[0].limits.max_connections",
      /whole number/,
    ],
    [
      `[[service]]\n[service.limits]\nidle_timeout = "soon"`,
      "service[0].limits.idle_timeout",
      /duration/,
    ],
    [`[[service]]\nlisten = "host:99999"`, "service[0].listen", /at most 65535/],
    [`[[service]]\nmode = "tunnel"`, "service[0].mode", /echo\|proxy/],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\nmode = "proxy"`,
      "service[0].target",
      /required with mode = proxy/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\ntarget = "h:1"`,
      "service[0].target",
      /only used with mode = proxy/,
    ],
    [
      `[[service]]\ncert = ["a", "b"]\nkey = "a"\nca = "c"`,
      "service[0].key",
      /2 certificate chain\(s\) but 1 key/,
    ],
    [`[[service]]\ncert = "a"\nkey = "a"`, "service[0].ca", /required with client_auth = require/],
    [`[[service]]\nkey = "a"\nca = "c"`, "service[0].cert", /required/],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\ngroups = ["x25519"]`,
      "service[0].groups",
      /classical.*allow_classical/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\ngroups = ["kyber"]`,
      "service[0].groups",
      /unknown group "kyber"/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nclient_auth = "none"\nallow_cn = ["x"]`,
      "service[0].allow_cn",
      /client_auth is none/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\nallow_classical = "yes"`,
      "service[0].allow_classical",
      /true or false/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\n[service.hsm]\npin = "env:P"`,
      "service[0].hsm.pin",
      /needs the HSM on: hsm.module \(or --hsm\)/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\n[service.hsm]\ncomposite_mldsa_key = "m.key"`,
      "service[0].hsm.composite_mldsa_key",
      /needs the HSM on/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\ncrl_check = "all"`,
      "service[0].crl_check",
      /one of available\|leaf\|chain, got "all"/,
    ],
    [
      `[[service]]\ncert = "a"\nca = "c"\n[service.hsm]\nmodule = "/m.so"\nkey_label = "k"`,
      "service[0].hsm.token_label",
      /exactly one of hsm.token_label and hsm.slot/,
    ],
    [
      `[[service]]\ncert = "a"\nca = "c"\n[service.hsm]\nmodule = "/m.so"\nslot = 0`,
      "service[0].hsm.key_label",
      /exactly one of hsm.key_label and hsm.key_id/,
    ],
    [
      `[[service]]\ncert = "a"\nca = "c"\n[service.hsm]\nmodule = "/m.so"\nslot = 0\nkey_id = "xyz"`,
      "service[0].hsm.key_id",
      /hex/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\n[service.hsm]\nmodule = "/m.so"\nslot = 0\nkey_id = "01"`,
      "service[0].key",
      /not used when the key is in an HSM/,
    ],
    [
      `[[service]]\ncert = "a"\nkey = "a"\nca = "c"\ndrain_timeout = "1s"`,
      "service[0].drain_timeout",
      /process-wide/,
    ],
    [`listen = ":1"`, "listen", /belongs in a \[\[service\]\] section/],
    [
      `metrics_listen = ":9000"\n[[service]]\nlisten = ":9000"\ncert = "a"\nkey = "a"\nca = "c"`,
      "service[0].listen",
      /0\.0\.0\.0:9000 is already used by metrics_listen/,
    ],
    [
      `[[service]]\nlisten = ":1"\ncert = "a"\nkey = "a"\nca = "c"\n[[service]]\nlisten = ":1"\ncert = "a"\nkey = "a"\nca = "c"`,
      "service[1].listen",
      /0\.0\.0\.0:1 is already used by service "service-0"/,
    ],
    [`service = 3`, "service", /list of tables/],
    [`[[service]]\nlisten = ":1"\ncert = [`, "line 3 column 8", /TOML/],
  ];
  for (const [text, field, problem] of cases) {
    await Deno.writeTextFile(file, text);
    await expectError(sources(["--config", file]), field, file, problem);
  }
  const yaml = `${dir.path}/qsign.yml`;
  await Deno.writeTextFile(yaml, "service:\n  - listen: [\n");
  await expectError(sources(["--config", yaml]), "line 3 column 1", yaml, /./);
  await expectError(
    sources(["--config", `${dir.path}/qsign.ini`]),
    "--config",
    undefined,
    /\.toml, \*\.yaml/,
  );
  await expectError(
    sources(["--config", `${dir.path}/missing.toml`]),
    "--config",
    undefined,
    /cannot read/,
  );
});

Deno.test("errors in flags and QSIGN_* variables name the flag or the variable", async () => {
  await expectError(
    sources([...MINIMAL, "--max-connections", "lots"]),
    "--max-connections",
    undefined,
    /whole number/,
  );
  await expectError(
    sources(MINIMAL, { QSIGN_MAX_CONNECTIONS: "0" }),
    "QSIGN_MAX_CONNECTIONS",
    undefined,
    /between 1/,
  );
  await expectError(
    sources(MINIMAL, { QSIGN_ALLOW_CLASSICAL: "perhaps" }),
    "QSIGN_ALLOW_CLASSICAL",
    undefined,
    /true or false/,
  );
  await expectError(
    sources(MINIMAL, { QTLS_LOG_LEVEL: "LOUD" }),
    "QTLS_LOG_LEVEL",
    undefined,
    /DEBUG\|INFO/,
  );
  await expectError(
    sources([...MINIMAL, "--mode", "proxy"]),
    "--target",
    undefined,
    /required with mode = proxy/,
  );
  await expectError(
    sources(["--cert", "a"]),
    "--key",
    undefined,
    /1 certificate chain\(s\) but 0 key/,
  );
});

Deno.test("unreadable or mismatched certificate files are reported with the field and the file", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const file = `${dir.path}/qsign.toml`;
  const write = (cert: string, key: string) =>
    Deno.writeTextFile(file, `[[service]]\ncert = "${cert}"\nkey = "${key}"\nca = "${pki.root}"\n`);

  await write(`${dir.path}/nope.crt`, pki.serverKey);
  let config = await loadDaemonConfig(sources(["--config", file]));
  await rejects(loadServiceMaterials(config.services[0]), (e) => {
    ok(e instanceof ConfigError);
    equal(e.field, "service[0].cert");
    equal(e.file, file);
    match(e.message, /nope\.crt: no such file/);
    return true;
  });

  await write(pki.serverCert, pki.clientKey);
  config = await loadDaemonConfig(sources(["--config", file]));
  await rejects(loadServiceMaterials(config.services[0]), (e) => {
    ok(e instanceof ConfigError);
    equal(e.field, "service[0].key");
    equal(e.file, file);
    match(e.message, /client\.key does not belong to the certificate/);
    return true;
  });

  await write(pki.serverCert, pki.serverKey);
  config = await loadDaemonConfig(sources(["--config", file]));
  const materials = await loadServiceMaterials(config.services[0]);
  equal(materials.certificates.length, 1);
  equal(materials.trustAnchors.length, 1);
  match(materials.summaries[0].subject, /CN=qtls-server\.qsign\.local/);
});

Deno.test("qsign serve --check-config: exit 0 and a summary, or exit 2 naming field and file", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const file = `${dir.path}/qsign.yaml`;
  await Deno.writeTextFile(
    file,
    `service:\n  - name: demo\n    cert: ${pki.serverCert}\n    key: ${pki.serverKey}\n    ca: ${pki.root}\n`,
  );
  const good = await runQsign(["serve", "--config", file, "--check-config"]);
  equal(good.code, 0, good.stderr);
  match(good.stdout, /service demo: echo on 0\.0\.0\.0:8443, CN=qtls-server\.qsign\.local/);
  match(good.stdout, /configuration OK/);
  const port = await runQsign([
    "serve",
    "--port",
    "9443",
    "--cert",
    pki.serverCert,
    "--key",
    pki.serverKey,
    "--ca",
    pki.root,
    "--check-config",
  ]);
  equal(port.code, 0, port.stderr);
  match(port.stdout, /service default: echo on 0\.0\.0\.0:9443/);

  await Deno.writeTextFile(
    file,
    `service:\n  - name: demo\n    mode: proxy\n    cert: a\n    key: a\n    ca: c\n`,
  );
  const bad = await runQsign(["serve", "--config", file, "--check-config"]);
  equal(bad.code, 2);
  equal(bad.stderr.trim(), `qsign: ${file}: service[0].target: required with mode = proxy`);

  const badFlag = await runQsign([
    "serve",
    "--config",
    file,
    "--check-config",
    "--mode",
    "echo",
    "--cert",
    "x",
  ]);
  equal(badFlag.code, 2);
  equal(badFlag.stderr.trim(), "qsign: --cert: x: no such file");
});
