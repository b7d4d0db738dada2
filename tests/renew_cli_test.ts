/**
 * `qsign renew --dry-run` says what a run would do, one JSON line per certificate, and changes
 * nothing; with the CA keys encrypted, a real run opens them with QSIGN_CA_PASSPHRASE (what the
 * renewal unit sets from its systemd credential).
 */
import { deepEqual, equal, match } from "node:assert/strict";
import { join } from "node:path";
import { runQsign, tempDir } from "./support/env.ts";

const lines = (stdout: string) =>
  stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));

Deno.test("renew --dry-run reports due and fresh certificates and issues nothing", async () => {
  await using dir = await tempDir();
  const env = { CA_PASS: "renewal passphrase", QSIGN_CA_PASSPHRASE: "env:CA_PASS" };
  const init = await runQsign(
    ["pki", "init", "--dir", join(dir.path, "pki"), "--alg", "ecdsa-p256"],
    { env },
  );
  equal(init.code, 0, init.stderr);
  const config = join(dir.path, "qsign.toml");
  await Deno.writeTextFile(
    config,
    `[renewal]
ca_dir = "pki"
renew_before = "25%"

[[certificate]]
name = "front"
cert = "front.crt"
key = "front.key"
cn = "front.qsign.local"
ttl = "24h"
`,
  );
  const index = () => Deno.readTextFile(join(dir.path, "pki", "index.json"));
  const before = await index();
  const dry = await runQsign(["renew", "--config", config, "--dry-run"], { env });
  equal(dry.code, 0, dry.stderr);
  deepEqual(
    lines(dry.stdout).map((l) => [l.certificate, l.result, l.reason, l.serial]),
    [["front", "due", "missing", null]],
  );
  equal(await Deno.stat(join(dir.path, "front.crt")).catch(() => null), null);
  equal(await index(), before);

  const real = await runQsign(["renew", "--config", config], { env });
  equal(real.code, 0, real.stderr);
  const [renewed] = lines(real.stdout);
  equal(renewed.result, "renewed");
  // The CA keys are encrypted: without the passphrase a renewal fails, naming the key.
  const forced = await runQsign(["renew", "--config", config, "--force"], {
    env: { QSIGN_CA_PASSPHRASE: "" },
  });
  equal(forced.code, 2, forced.stdout + forced.stderr);
  match(lines(forced.stdout)[0].error, /server-ca\.key: is an encrypted private key/);

  const fresh = await runQsign(["renew", "--config", config, "--dry-run"], { env });
  const [line] = lines(fresh.stdout);
  deepEqual([line.result, line.reason, line.serial], ["fresh", "fresh", renewed.new_serial]);
  match(line.due_at, /^\d{4}-\d\d-\d\dT/);
});
