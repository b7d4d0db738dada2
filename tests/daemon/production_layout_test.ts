/**
 * The production layout (docs/production.md) that `scripts/install.sh` lays down and re-applies:
 * the daemon's user qtls cannot read any CA key, the renewal's user qtls-ca is the only reader
 * of the issuing intermediates, the Root CA key is not on the host, and what the renewal writes
 * into the served directory stays readable by the daemon. Real users, real permission checks
 * (`setpriv` to each user); the test creates the users as install.sh does.
 */
import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { storeCertificate } from "../../src/issuer/store.ts";
import { ROOT, runQsign, tempDir } from "../support/env.ts";
import { selfSignedPair } from "../issuer/support/certs.ts";

async function run(command: string, args: string[]): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/** Runs `cat FILE` as `user` (its own groups only): true when it could read the file. */
async function canRead(user: string, file: string): Promise<boolean> {
  const out = await run("setpriv", [
    `--reuid=${user}`,
    `--regid=${user}`,
    "--init-groups",
    "cat",
    file,
  ]);
  if (out.code !== 0) match(out.output, /Permission denied/, `${user} ${file}: ${out.output}`);
  return out.code === 0;
}

async function install(scratch: string, root: string): Promise<string> {
  const stub = `${scratch}/qsign`;
  await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  const out = await run("bash", [
    `${ROOT}/scripts/install.sh`,
    "--root",
    root,
    "--users",
    "--binary",
    stub,
  ]);
  equal(out.code, 0, out.output);
  return out.output;
}

async function filesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...await filesUnder(path));
    else found.push(path);
  }
  return found;
}

Deno.test("install.sh --root --users: qtls reads no CA key, qtls-ca alone reads the intermediates", async () => {
  await using dir = await tempDir();
  // Other users must be able to walk down to the installed tree, as they can to a real /etc.
  await Deno.chmod(dir.path, 0o755);
  const root = `${dir.path}/root`;
  const etc = `${root}/etc/qsign`;
  await install(dir.path, root);

  // The operator's steps (docs/production.md): the intermediates in /etc/qsign/ca with the
  // Root CA on offline media, a served leaf and the trust anchor in /etc/qsign/certs.
  const env = { CA_PASS: "correct horse battery staple" };
  const init = await runQsign([
    "pki",
    "init",
    "--dir",
    `${etc}/ca`,
    "--root-dir",
    `${dir.path}/offline-root`,
    "--passphrase",
    "env:CA_PASS",
  ], { env });
  equal(init.code, 0, init.stderr);
  const issued = await runQsign([
    "pki",
    "issue",
    "--dir",
    `${etc}/ca`,
    "--profile",
    "server",
    "--cn",
    "qtls-server.qsign.local",
    "--out",
    `${etc}/certs/server`,
  ], { env: { ...env, QSIGN_CA_PASSPHRASE: "env:CA_PASS" } });
  equal(issued.code, 0, issued.stderr);
  await Deno.copyFile(`${etc}/ca/root-ca.crt`, `${etc}/certs/root-ca.crt`);
  await Deno.writeTextFile(`${etc}/ca-passphrase`, env.CA_PASS);
  // Run again: it re-applies owners and modes to what was added.
  await install(dir.path, root);

  const caKeys = (await filesUnder(`${etc}/ca`)).filter((f) => f.endsWith(".key"));
  ok(
    caKeys.some((f) => f.endsWith("server-ca.key")) &&
      caKeys.some((f) => f.endsWith("client-ca.key")),
  );
  // No Root CA key anywhere on the host's tree.
  equal((await filesUnder(root)).filter((f) => f.endsWith("root-ca.key")).length, 0);
  for (const key of caKeys) {
    equal(await canRead("qtls", key), false, `qtls reads ${key}`);
    match(await Deno.readTextFile(key), /^-----BEGIN (ENCRYPTED )?PRIVATE KEY-----/);
  }
  for (const ca of ["server-ca.key", "client-ca.key"]) {
    match(await Deno.readTextFile(`${etc}/ca/${ca}`), /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
    equal(await canRead("qtls-ca", `${etc}/ca/${ca}`), true);
  }
  equal(await canRead("qtls", `${etc}/ca-passphrase`), false);
  equal(await canRead("qtls-ca", `${etc}/ca-passphrase`), false, "systemd hands it over, as root");
  // What the daemon needs, it reads.
  for (const file of ["qsign.toml", "certs/server.crt", "certs/server.key", "certs/root-ca.crt"]) {
    equal(await canRead("qtls", `${etc}/${file}`), true, file);
  }
  // The daemon's user is in no group that opens the CA directory.
  const groups = await run("id", ["-nG", "qtls"]);
  equal(groups.output.trim(), "qtls");

  // A renewal writes into the setgid served directory: the daemon's group can read the new key.
  const paths = {
    cert: `${etc}/certs/renewed.crt`,
    key: `${etc}/certs/renewed.key`,
    chain: `${etc}/certs/renewed-chain.pem`,
  };
  const pair = await selfSignedPair("renewed.qsign.local");
  await storeCertificate(paths, { ...pair, chainPem: pair.certPem }, pair.serial);
  await run("chown", ["-R", "qtls-ca", `${etc}/certs`]);
  const stat = await Deno.stat(paths.key);
  equal(stat.mode! & 0o777, 0o640);
  equal(await canRead("qtls", paths.key), true);

  // The units: the daemon runs as qtls with the CA out of its sight; the renewal as qtls-ca,
  // the only unit given the CA passphrase.
  const daemonUnit = await Deno.readTextFile(`${root}/etc/systemd/system/qsign-qtls.service`);
  const renewalUnit = await Deno.readTextFile(
    `${root}/etc/systemd/system/qtls-cert-renewal.service`,
  );
  match(daemonUnit, /^User=qtls$/m);
  match(daemonUnit, /^InaccessiblePaths=.*\/etc\/qsign\/ca\b/m);
  ok(!/ca-passphrase:/.test(daemonUnit.replace(/^#.*$/gm, "")));
  match(renewalUnit, /^User=qtls-ca$/m);
  match(renewalUnit, /^LoadCredential=ca-passphrase:\/etc\/qsign\/ca-passphrase$/m);
  match(renewalUnit, /^Environment=QSIGN_CA_PASSPHRASE=credential:ca-passphrase$/m);
  match(renewalUnit, /^ReadWritePaths=.*\/etc\/qsign\/ca\b/m);
});
