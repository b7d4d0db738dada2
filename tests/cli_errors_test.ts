/**
 * An operator's mistake never prints a stack trace: every command and subcommand is run with a
 * table of bad inputs (missing and unreadable files, a file where a directory belongs, a missing
 * output directory, an address nothing listens on, bad values, unknown options); each ends with
 * exit status 1 or 2 and one line on stderr naming what failed, never an `at …` frame or
 * "error: Uncaught".
 */
import { equal, match, ok } from "node:assert/strict";
import { runQsign, tempDir } from "./support/env.ts";

Deno.test("no command answers a bad input with a stack trace", async () => {
  await using dir = await tempDir();
  const d = dir.path;
  await Deno.writeTextFile(`${d}/file`, "not a directory\n");
  await Deno.writeTextFile(`${d}/garbage.pem`, "-----BEGIN CERTIFICATE-----\n!!!\n");
  await Deno.writeTextFile(`${d}/unreadable`, "x", { mode: 0o000 });
  const pki = `${d}/pki`;
  const made = await runQsign(["pki", "init", "--dir", pki, "--alg", "ecdsa-p256"]);
  equal(made.code, 0, made.stderr);
  const hsm = ["--hsm-module", `${d}/no-such-module.so`, "--hsm-token-label", "t"];
  const client = ["--ca", `${pki}/root-ca.crt`];

  // [command line, a pattern the one-line message must match]
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /unknown command/],
    [
      ["serve", "--cert", `${d}/missing.crt`, "--key", `${d}/missing.key`, ...client],
      /missing\.crt/,
    ],
    [[
      "serve",
      "--cert",
      `${pki}/server.crt`,
      "--key",
      `${d}/garbage.pem`,
      "--ca",
      `${pki}/root-ca.crt`,
      "--check-config",
    ], /garbage\.pem/],
    [["serve", "--config", `${d}/missing.toml`], /missing\.toml/],
    [["serve", "--config", d], /./],
    [[
      "serve",
      "--listen",
      "127.0.0.1:99999",
      "--cert",
      `${pki}/server.crt`,
      "--key",
      `${pki}/server.key`,
    ], /listen/],
    [["serve", "--lsiten", "x"], /unknown option --lsiten/],
    [["connect", "127.0.0.1:1", ...client, "--send", "x"], /127\.0\.0\.1:1: connection refused/],
    [["connect", "127.0.0.1:1", "--ca", `${d}/unreadable`, "--send", "x"], /unreadable/],
    [["connect", "127.0.0.1:1", "--ca", d, "--send", "x"], new RegExp(d.replace(/[/.]/g, "\\$&"))],
    [[
      "connect",
      "127.0.0.1:1",
      ...client,
      "--cert",
      `${pki}/client.crt`,
      "--key",
      `${d}/missing.key`,
    ], /missing\.key/],
    [["connect", "nohost..invalid:1", ...client, "--send", "x"], /./],
    [["connect", "127.0.0.1:1", ...client, "--listen", "127.0.0.1:99999"], /listen/],
    [["renew", "--config", `${d}/missing.toml`], /missing\.toml/],
    [["renew", "--config", `${d}/file`], /file/],
    [["pki"], /usage: qsign pki/],
    [["pki", "init", "--dir", `${d}/file`], /file: exists and is not a directory/],
    [["pki", "init", "--dir", `${d}/file/sub`], /file/],
    [["pki", "init", "--dir", pki], /already holds a PKI/],
    [[
      "pki",
      "issue",
      "--dir",
      `${d}/nowhere`,
      "--profile",
      "server",
      "--cn",
      "x",
      "--out",
      `${d}/x`,
    ], /nowhere/],
    [
      ["pki", "issue", "--dir", pki, "--profile", "server", "--cn", "x", "--out", `${d}/no/dir/x`],
      /no\/dir: no such directory/,
    ],
    [[
      "pki",
      "issue",
      "--dir",
      pki,
      "--profile",
      "server",
      "--csr",
      `${d}/garbage.pem`,
      "--out",
      `${d}/x`,
    ], /garbage\.pem/],
    [
      ["pki", "issue", "--dir", pki, "--profile", "nope", "--cn", "x", "--out", `${d}/x`],
      /--profile must be one of/,
    ],
    [["pki", "revoke", "--dir", pki, "zz"], /not a hex serial/],
    [
      ["pki", "crl", "--dir", pki, "--ca", "client", "--out", `${d}/no/dir/c.crl`],
      /no\/dir\/c\.crl/,
    ],
    [["pki", "crl", "--dir", pki, "--ca", "client", "--out", d], /cannot write|directory/],
    [["pki", "show", `${d}/missing.pem`], /missing\.pem/],
    [["pki", "show", `${d}/garbage.pem`], /garbage\.pem/],
    [["pki", "show", d], /./],
    [["pki", "verify", "--trust", `${d}/missing.pem`, `${pki}/server.crt`], /missing\.pem/],
    [["pki", "verify", "--trust", `${pki}/root-ca.crt`, `${d}/garbage.pem`], /garbage\.pem/],
    [["hsm"], /usage: qsign hsm/],
    [["hsm", "slots", "--hsm-module", `${d}/no-such-module.so`], /no-such-module\.so/],
    [["hsm", "keys", ...hsm], /no-such-module\.so/],
    [["hsm", "keygen", ...hsm, "--hsm-pin", "env:NOPE", "--key-label", "k"], /NOPE/],
    [[
      "hsm",
      "csr",
      ...hsm,
      "--hsm-pin",
      "env:NOPE",
      "--key-label",
      "k",
      "--subject",
      "/CN=x",
      "--out",
      `${d}/no/dir/x.csr`,
    ], /no\/dir/],
    [["hsm", "delete", ...hsm, "--hsm-pin", "env:NOPE", "--key-label", "k"], /NOPE/],
    [[
      "vault",
      "issue",
      "--vault-addr",
      "http://127.0.0.1:1",
      "--token",
      "env:NOPE",
      "--mount",
      "pki",
      "--role",
      "r",
      "--cn",
      "x",
      "--out",
      `${d}/v`,
    ], /NOPE/],
    [
      ["bench", "--connect", "127.0.0.1:1", ...client, "--handshakes", "1"],
      /127\.0\.0\.1:1|connection refused/,
    ],
    [["completion", "fish"], /bash|zsh/],
    [["version", "extra"], /unexpected argument/],
    [["man", "extra"], /unexpected argument/],
    [["completion"], /missing SHELL/],
  ];
  // An address already in use is named with the service and the address.
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  cases.push([
    [
      "serve",
      "--listen",
      `127.0.0.1:${busy.addr.port}`,
      "--metrics-listen",
      "off",
      "--cert",
      `${pki}/server.crt`,
      "--key",
      `${pki}/server.key`,
      ...client,
    ],
    new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy.addr.port}: address already in use`),
  ]);
  const failures: string[] = [];
  // A few at a time: each is a subprocess on a shared machine.
  for (let i = 0; i < cases.length; i += 4) {
    await Promise.all(
      cases.slice(i, i + 4).map(async ([argv, expected]) => {
        const { code, stdout, stderr } = await runQsign(argv);
        const output = stdout + stderr;
        const where = `qsign ${argv.join(" ")} → ${code}\n${output}`;
        if (/^\s+at /m.test(output) || /error: Uncaught/.test(output)) {
          failures.push(`stack trace: ${where}`);
        } else if (code !== 1 && code !== 2) failures.push(`exit status: ${where}`);
        else if (!expected.test(output)) failures.push(`message: ${where}`);
        else if (/internal error/.test(stderr)) failures.push(`internal error: ${where}`);
      }),
    );
  }
  equal(failures.length, 0, failures.join("\n\n"));
});

Deno.test("an internal error is one line too; QSIGN_DEBUG=1 shows where", async () => {
  // A bad QSIGN_CRYPTO is an operator error (exit 2), reported before any command runs.
  const bad = await runQsign(["pki", "show", "x"], { env: { QSIGN_CRYPTO: "nope" } });
  equal(bad.code, 2);
  ok(!/^\s+at /m.test(bad.stderr), bad.stderr);
  match(bad.stderr, /^qsign: .*QSIGN_CRYPTO/);
});
