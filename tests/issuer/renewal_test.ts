/**
 * `qsign renew` as the systemd timer runs it: a real config file, the embedded CA or the mock
 * Vault, real files, a SIGHUP to the pid in the pid file; and crash safety, by killing the renewal
 * (SIGKILL, from inside, via QSIGN_TEST_CRASH_AT) right after each of the store's write steps.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { certMatchesKey, STORE_STEPS } from "../../src/issuer/store.ts";
import { readServedCertificate } from "../../src/issuer/renewal.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { MockVault } from "./support/mock_vault.ts";
import { makeTestPki } from "./support/pki.ts";
import { selfSignedPair } from "./support/certs.ts";

const pki = await makeTestPki("mldsa65");
globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

function localConfig(dir: string, extra = ""): string {
  return `
pid_file = "${dir}/qsign.pid"
[renewal]
ca_dir = "${pki.dir}"
${extra}
[[certificate]]
name = "server"
cert = "server.crt"
key = "server.key"
chain = "ca-chain.pem"
cn = "qtls-server.qsign.local"
sans = ["qtls-server.qsign.local", "127.0.0.1"]
ttl = "24h"
`;
}

async function renew(config: string, ...args: string[]) {
  const result = await runQsign(["renew", "--config", config, ...args]);
  const lines = result.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  return { ...result, lines };
}

/**
 * A stand-in daemon: a shell that writes its pid into the pid file, which it holds locked (with
 * flock(1), as `qsign serve` holds its own), and prints "reloaded" and exits on SIGHUP.
 */
async function fakeDaemon(pidFile: string) {
  const script = 'exec 9>>"$0"; flock --exclusive 9; echo $$ > "$0"; ' +
    'trap "echo reloaded; exit 0" HUP; echo ready; while :; do sleep 0.05; done';
  const child = new Deno.Command("sh", { args: ["-c", script, pidFile], stdout: "piped" })
    .spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  equal((await reader.read()).value?.trim(), "ready");
  return {
    /** Waits (bounded) for the SIGHUP; answers whether it came. */
    async reloaded(): Promise<boolean> {
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const { value } = await reader.read();
      clearTimeout(timer);
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.status;
      return value?.trim() === "reloaded";
    },
  };
}

Deno.test("renew issues a missing certificate, reloads the daemon, then leaves it alone", async () => {
  await using dir = await tempDir();
  const config = join(dir.path, "qsign.toml");
  await Deno.writeTextFile(config, localConfig(dir.path));
  const daemon = await fakeDaemon(join(dir.path, "qsign.pid"));

  const first = await renew(config);
  equal(first.code, 0, first.stderr);
  equal(first.lines.length, 1);
  const [line] = first.lines;
  deepEqual({ ...line, new_serial: typeof line.new_serial, not_after: typeof line.not_after }, {
    certificate: "server",
    issuer: "local",
    result: "renewed",
    reason: "missing",
    old_serial: null,
    new_serial: "string",
    not_after: "string",
  });
  ok(await daemon.reloaded(), "the daemon got SIGHUP");
  match(first.stderr, /sent SIGHUP to the daemon \(pid \d+/);
  const cert = join(dir.path, "server.crt");
  const key = join(dir.path, "server.key");
  ok(await certMatchesKey(cert, key));
  equal((await readServedCertificate(cert))?.serial, line.new_serial);
  equal((await Deno.stat(key)).mode! & 0o777, 0o600);

  const before = await snapshot(dir.path);
  const second = await renew(config);
  equal(second.code, 0, second.stderr);
  deepEqual(second.lines.map((l) => [l.result, l.reason, l.old_serial]), [
    ["fresh", "fresh", line.new_serial],
  ]);
  deepEqual(await snapshot(dir.path), before, "a second run changes nothing");

  const forced = await renew(config, "--force");
  equal(forced.code, 0, forced.stderr);
  equal(forced.lines[0].reason, "forced");
  equal(forced.lines[0].old_serial, line.new_serial);
  ok(forced.lines[0].new_serial !== line.new_serial);
  ok(await certMatchesKey(cert, key));
});

/** Every file, link and its content under `dir`, to compare two moments. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  const walk = async (path: string) => {
    for await (const entry of Deno.readDir(path)) {
      const full = join(path, entry.name);
      if (entry.isSymlink) result[full] = `-> ${await Deno.readLink(full)}`;
      else if (entry.isDirectory) await walk(full);
      else result[full] = await Deno.readTextFile(full);
    }
  };
  await walk(dir);
  return result;
}

Deno.test("a Vault 403 fails the run with exit 1 and leaves the served files untouched", async () => {
  await using dir = await tempDir();
  const vaultPki = await makeTestPki();
  await using _pki = {
    [Symbol.asyncDispose]: () => Deno.remove(vaultPki.dir, { recursive: true }),
  };
  await using vault = new MockVault({ caDir: vaultPki.dir });
  const tokenFile = join(dir.path, "vault-token");
  await Deno.writeTextFile(tokenFile, vault.rootToken);
  const config = join(dir.path, "qsign.yaml");
  await Deno.writeTextFile(
    config,
    `renewal:
  vault: {address: "${vault.address}", token: "file://${tokenFile}", timeout: 5s}
certificate:
  - {name: vault-server, cert: v.crt, key: v.key, chain: v-chain.pem, issuer: vault,
     cn: qtls-server.qsign.local, sans: [qtls-server.qsign.local], ttl: 24h}
`,
  );
  const first = await renew(config);
  equal(first.code, 0, first.stderr);
  equal(first.lines[0].issuer, "vault");
  ok(await certMatchesKey(join(dir.path, "v.crt"), join(dir.path, "v.key")));
  match(first.stderr, /no pid_file: a running daemon reloads when its file watch sees/);

  const before = await snapshot(dir.path);
  await Deno.writeTextFile(tokenFile, "hvs.revoked");
  const denied = await renew(config, "--force");
  equal(denied.code, 1, denied.stderr);
  equal(denied.lines[0].result, "failed");
  equal(denied.lines[0].old_serial, first.lines[0].new_serial);
  equal(denied.lines[0].new_serial, null);
  match(
    denied.lines[0].error,
    /Vault GET \/v1\/auth\/token\/lookup-self: HTTP 403: permission denied/,
  );
  deepEqual(await snapshot(dir.path), { ...before, [tokenFile]: "hvs.revoked" });
});

Deno.test("a pid file no daemon holds (left by a killed one) gets no process a SIGHUP", async () => {
  await using dir = await tempDir();
  const config = join(dir.path, "qsign.toml");
  await Deno.writeTextFile(config, localConfig(dir.path));
  // SIGHUP would end `sleep`: it must still be running after the renewal.
  const bystander = new Deno.Command("sleep", { args: ["60"] }).spawn();
  try {
    await Deno.writeTextFile(join(dir.path, "qsign.pid"), `${bystander.pid}\n`);
    const result = await renew(config);
    equal(result.code, 0, result.stderr);
    equal(result.lines[0].result, "renewed");
    match(result.stderr, /no daemon to reload: none holds .*qsign\.pid/);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      bystander.status.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 200)),
    ]);
    clearTimeout(timer);
    equal(exited, false, "the bystander is still running");
  } finally {
    bystander.kill("SIGKILL");
    await bystander.status;
  }
});

Deno.test("a config error exits 2 and names the field", async () => {
  await using dir = await tempDir();
  const config = join(dir.path, "qsign.toml");
  await Deno.writeTextFile(config, localConfig(dir.path).replace('ttl = "24h"', 'ttl = "soon"'));
  const result = await renew(config);
  equal(result.code, 2);
  match(result.stderr, /qsign\.toml: certificate\[0\]\.ttl: must be a duration/);
});

Deno.test("killed after any write step, the served certificate still matches its key", async () => {
  await using dir = await tempDir();
  const config = join(dir.path, "qsign.toml");
  await Deno.writeTextFile(config, localConfig(dir.path));
  const cert = join(dir.path, "server.crt");
  const key = join(dir.path, "server.key");
  for (const step of STORE_STEPS) {
    // Plain files first, so the adoption steps run too, then the whole write.
    for (const name of await Array.fromAsync(Deno.readDir(dir.path))) {
      if (name.name !== "qsign.toml") {
        await Deno.remove(join(dir.path, name.name), { recursive: true });
      }
    }
    const old = await selfSignedPair("old.qsign.local");
    await Deno.writeTextFile(cert, old.certPem);
    await Deno.writeTextFile(key, old.keyPem, { mode: 0o600 });

    const crashed = await runQsign(["renew", "--config", config, "--force"], {
      env: { QSIGN_TEST_CRASH_AT: step },
    });
    equal(crashed.code, 137, `step ${step}: ${crashed.stderr}`);
    ok(await certMatchesKey(cert, key), `after a crash at ${step}, cert and key match`);
    const served = (await readServedCertificate(cert))?.serial;
    ok(served !== undefined, `after ${step}: a certificate is served`);

    const rerun = await renew(config, "--force");
    equal(rerun.code, 0, `rerun after ${step}: ${rerun.stderr}`);
    equal(rerun.lines[0].old_serial, served);
    ok(await certMatchesKey(cert, key));
    const leftovers = (await Array.fromAsync(Deno.readDir(dir.path))).filter((e) =>
      e.name.includes(".tmp-")
    );
    deepEqual(leftovers, [], `no temporary links after the rerun (${step})`);
  }
});
