/**
 * The systemd units, installed by scripts/install.sh into a scratch root, pass
 * `systemd-analyze verify` without a single warning; the sample configuration it installs passes
 * `qsign serve --check-config` once certificates are in place.
 */
import { equal, match, ok } from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { loadRenewalConfig } from "../../src/issuer/config.ts";
import { generateCrl } from "../../src/pki/ca.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import { ROOT, runQsign, tempDir } from "../support/env.ts";
import { makePki } from "./support.ts";

const UNITS = ["qsign-qtls.service", "qtls-cert-renewal.service", "qtls-cert-renewal.timer"];

async function run(command: string, args: string[]): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/**
 * A root that `systemd-analyze verify --root` can resolve the units in: systemd's own units
 * (for sysinit.target and the like) and /bin/kill, which ExecReload names. install.sh adds
 * the binary (a stub here: compiling needs Deno's downloadable runtime) and the units.
 */
async function scratchRoot(root: string): Promise<void> {
  await Deno.mkdir(`${root}/usr/lib/systemd`, { recursive: true });
  await Deno.mkdir(`${root}/usr/bin`, { recursive: true });
  const copy = await run("cp", ["-a", "/usr/lib/systemd/system", `${root}/usr/lib/systemd/`]);
  equal(copy.code, 0, copy.output);
  await Deno.copyFile("/usr/bin/kill", `${root}/usr/bin/kill`);
  await Deno.chmod(`${root}/usr/bin/kill`, 0o755);
  await Deno.symlink("usr/bin", `${root}/bin`);
  await Deno.symlink("usr/lib", `${root}/lib`);
}

/** Runs install.sh into `root` with a stub binary (in `scratch`) standing in for the compiled one. */
async function install(scratch: string, root: string): Promise<void> {
  const stub = `${scratch}/qsign`;
  await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  const installed = await run("bash", [
    `${ROOT}/scripts/install.sh`,
    "--root",
    root,
    "--binary",
    stub,
  ]);
  equal(installed.code, 0, installed.output);
}

Deno.test("install.sh installs units that systemd-analyze verify accepts without warnings", async () => {
  await using dir = await tempDir();
  const root = `${dir.path}/root`;
  await scratchRoot(root);
  await install(dir.path, root);
  for (const unit of UNITS) ok((await Deno.stat(`${root}/etc/systemd/system/${unit}`)).isFile);
  ok((await Deno.stat(`${root}/usr/local/bin/qsign`)).mode! & 0o111);
  ok((await Deno.stat(`${root}/etc/qsign/qsign.toml`)).isFile);

  const verify = await run("systemd-analyze", [
    "verify",
    `--root=${root}`,
    ...UNITS.map((u) => `/etc/systemd/system/${u}`),
  ]);
  equal(verify.code, 0, verify.output);
  equal(verify.output.trim(), "", `systemd-analyze verify warned:\n${verify.output}`);

  // The check is real: a unit with an unknown key is reported.
  const broken = `${root}/etc/systemd/system/qsign-qtls.service`;
  await Deno.writeTextFile(broken, (await Deno.readTextFile(broken)) + "NoSuchOption=yes\n");
  const complaint = await run("systemd-analyze", [
    "verify",
    `--root=${root}`,
    "/etc/systemd/system/qsign-qtls.service",
  ]);
  match(complaint.output, /Unknown key 'NoSuchOption'/);
});

Deno.test("the units say what the original example's unit said", async () => {
  const daemon = await Deno.readTextFile(`${ROOT}/systemd/qsign-qtls.service`);
  for (
    const line of [
      "Type=notify",
      "User=qtls",
      "ExecStart=/usr/local/bin/qsign serve --config /etc/qsign/qsign.toml",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "Restart=always",
      "LimitNOFILE=65536",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "ReadWritePaths=/var/log/qsign",
      "CapabilityBoundingSet=",
      "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
      "SystemCallFilter=@system-service",
    ]
  ) ok(daemon.split("\n").includes(line), `qsign-qtls.service lacks ${line}`);
  const renewal = await Deno.readTextFile(`${ROOT}/systemd/qtls-cert-renewal.service`);
  ok(renewal.includes("Type=oneshot\n"));
  ok(renewal.includes("ExecStart=/usr/local/bin/qsign --renewal\n"));
  const timer = await Deno.readTextFile(`${ROOT}/systemd/qtls-cert-renewal.timer`);
  ok(timer.includes("OnCalendar=hourly\n"));
  ok(timer.includes("Persistent=true\n"));
});

Deno.test("the sample configuration's pid_file is in the daemon's RuntimeDirectory, as renew reads it", async () => {
  const unit = await Deno.readTextFile(`${ROOT}/systemd/qsign-qtls.service`);
  const runtime = /^RuntimeDirectory=(\S+)$/m.exec(unit)?.[1];
  ok(runtime, "qsign-qtls.service has no RuntimeDirectory=");
  const sample = `${ROOT}/deploy/qsign.toml`;
  const pidFile = parseToml(await Deno.readTextFile(sample)).pid_file;
  equal(pidFile, `/run/${runtime}/qsign.pid`);
  // qsign renew reads the same key from the same file.
  const renewal = await loadRenewalConfig(sample, { env: {} });
  equal(renewal.pidFile, pidFile);
});

Deno.test("the installed sample configuration passes --check-config with certificates in place", async () => {
  await using dir = await tempDir();
  const root = `${dir.path}/root`;
  await install(dir.path, root);
  const pki = await makePki(`${root}/etc/qsign/certs`);
  const crl = await generateCrl({ dir: pki.dir, profile: "client" });
  await Deno.writeTextFile(`${pki.dir}/client-ca.crl`, pemEncode("X509 CRL", crl));

  const check = await runQsign([
    "serve",
    "--config",
    `${root}/etc/qsign/qsign.toml`,
    "--check-config",
  ]);
  equal(check.code, 0, check.stderr);
  match(check.stdout, /service api: proxy on 0\.0\.0\.0:8443/);
  match(check.stdout, /service demo: echo on 127\.0\.0\.1:8444/);
});
