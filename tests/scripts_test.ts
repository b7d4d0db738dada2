/**
 * The scripts an operator or developer runs first: install.sh --help prints its help and nothing
 * else, scripts/qsign before setup says to run setup, scripts/test.sh FILE runs just that file,
 * and scripts/dev.sh listens on 127.0.0.1 unless told otherwise.
 */
import { equal, match, ok } from "node:assert/strict";
import { ROOT, runCommand, tempDir } from "./support/env.ts";

Deno.test("install.sh --help prints only its help", async () => {
  const r = await runCommand("bash", [`${ROOT}/scripts/install.sh`, "--help"]);
  equal(r.code, 0, r.stderr);
  match(r.stdout, /^Installs qsign as a systemd service/);
  match(r.stdout, /--no-systemctl/);
  ok(!/set -euo|repo=|^#/m.test(r.stdout), r.stdout);
});

Deno.test("scripts/qsign in a checkout without setup says to run setup", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/scripts`);
  await Deno.copyFile(`${ROOT}/scripts/qsign`, `${dir.path}/scripts/qsign`);
  const r = await runCommand("bash", [`${dir.path}/scripts/qsign`, "--help"]);
  equal(r.code, 1);
  equal(r.stdout, "");
  match(
    r.stderr,
    /^qsign: Deno is not installed in this checkout yet: run {2}bash .*scripts\/setup\.sh {2}first\n$/,
  );
});

Deno.test("scripts/test.sh FILE runs just that file and ends with its count", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/one_test.ts`;
  await Deno.writeTextFile(
    file,
    'Deno.test("one", () => {});\nDeno.test("two", () => {});\n',
  );
  const r = await runCommand("bash", [`${ROOT}/scripts/test.sh`, file]);
  equal(r.code, 0, r.stdout + r.stderr);
  match(r.stdout, /\n2 passed, 0 failed\n$/);
  ok(!r.stdout.includes("tests/"), "no other test file ran");
});

Deno.test("scripts/dev.sh listens on 127.0.0.1 unless told otherwise", async () => {
  const local = await runCommand("bash", [`${ROOT}/scripts/dev.sh`, "--check-config"]);
  equal(local.code, 0, local.stderr);
  match(local.stdout, /service default: echo on 127\.0\.0\.1:8443/);
  const told = await runCommand("bash", [
    `${ROOT}/scripts/dev.sh`,
    "--port",
    "9443",
    "--check-config",
  ]);
  equal(told.code, 0, told.stderr);
  match(told.stdout, /service default: echo on 0\.0\.0\.0:9443/);
  const env = await runCommand("bash", [`${ROOT}/scripts/dev.sh`, "--check-config"], {
    env: { QSIGN_LISTEN: "127.0.0.2:8443" },
  });
  equal(env.code, 0, env.stderr);
  match(env.stdout, /service default: echo on 127\.0\.0\.2:8443/);
});
