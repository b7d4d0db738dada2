import { equal, rejects } from "node:assert/strict";
import { readSecret } from "../src/secrets.ts";
import { writeFileAtomic } from "../src/fsutil.ts";
import { ConfigError } from "../src/errors.ts";
import { tempDir } from "./support/env.ts";

const opts = { label: "HSM PIN", field: "--hsm-pin" };

Deno.test("secrets: file://, env: and credential: references", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/pin`, "1234\n");
  equal(await readSecret(`file://${dir.path}/pin`, opts), "1234");
  Deno.env.set("QSIGN_TEST_PIN", "5678");
  equal(await readSecret("env:QSIGN_TEST_PIN", opts), "5678");
  Deno.env.set("CREDENTIALS_DIRECTORY", dir.path);
  equal(await readSecret("credential:pin", opts), "1234");
  Deno.env.delete("CREDENTIALS_DIRECTORY");
});

Deno.test("secrets: a missing source names the field; a literal warns", async () => {
  await rejects(
    readSecret("env:QSIGN_TEST_UNSET_VAR", opts),
    (e) => e instanceof ConfigError && /--hsm-pin/.test(e.message),
  );
  await rejects(readSecret("file:///nonexistent/pin", opts), /--hsm-pin: cannot read secret file/);
  const warnings: string[] = [];
  equal(await readSecret("1234", { ...opts, warn: (m) => warnings.push(m) }), "1234");
  equal(warnings.length, 1);
  equal(warnings[0].includes("1234"), false);
});

Deno.test("writeFileAtomic: replaces whole, sets the mode, leaves no temp file", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/server.key`;
  await writeFileAtomic(path, "old");
  await writeFileAtomic(path, "new key", { mode: 0o600 });
  equal(await Deno.readTextFile(path), "new key");
  equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  equal([...Deno.readDirSync(dir.path)].length, 1);
});
