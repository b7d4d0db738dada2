/**
 * Renewal with a running daemon (`qsign serve` in a subprocess, echo mode) sharing one
 * qsign.toml: the local issuer renews the certificate the daemon serves, the daemon picks it up
 * through SIGHUP (pid_file) or through its file watch, connections opened before go on, new
 * handshakes and `qtls_cert_expiry_seconds` see the new certificate; and a renewal killed at
 * each of the store's write steps never makes the daemon serve a certificate without its key.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { runningDaemonPid } from "../../src/daemon/pid_file.ts";
import { writeFileAtomic } from "../../src/fsutil.ts";
import { readServedCertificate } from "../../src/issuer/renewal.ts";
import { certMatchesKey, STORE_STEPS } from "../../src/issuer/store.ts";
import { issueLeaf } from "../../src/pki/ca.ts";
import { runQsign, tempDir } from "../support/env.ts";
import {
  type AuditEvent,
  Daemon,
  exchange,
  httpGet,
  makePki,
  type Pki,
  qsignClient,
} from "../daemon/support.ts";

/** A PKI, a config with one echo service and its managed certificate, and where things are. */
interface Setup {
  dir: string;
  pki: Pki;
  config: string;
  cert: string;
  key: string;
  pidFile?: string;
}

/**
 * Writes qsign.toml and a plain certificate/key pair issued by the embedded CA `issuedAgo`
 * with a two-minute TTL (leaves are backdated a minute, so the lifetime is three minutes).
 */
async function setUp(dir: string, options: { pidFile: boolean; issuedAgoMs: number }) {
  const pki = await makePki(join(dir, "pki"));
  await Deno.mkdir(join(dir, "certs"));
  await Deno.mkdir(join(dir, "run"));
  const setup: Setup = {
    dir,
    pki,
    config: join(dir, "qsign.toml"),
    cert: join(dir, "certs", "server.crt"),
    key: join(dir, "certs", "server.key"),
    pidFile: options.pidFile ? join(dir, "run", "qsign.pid") : undefined,
  };
  const leaf = await issueLeaf({
    dir: pki.dir,
    profile: "server",
    cn: "qtls-server.qsign.local",
    sans: ["DNS:localhost", "IP:127.0.0.1"],
    ttlSeconds: 120,
    now: new Date(Date.now() - options.issuedAgoMs),
  });
  await Deno.writeTextFile(setup.key, leaf.keyPem!, { mode: 0o600 });
  await Deno.writeTextFile(setup.cert, leaf.certPem);
  await Deno.writeTextFile(
    setup.config,
    `${options.pidFile ? 'pid_file = "run/qsign.pid"' : ""}
metrics_listen = "127.0.0.1:0"

[renewal]
ca_dir = "pki"

[[service]]
name = "demo"
listen = "127.0.0.1:0"
mode = "echo"
cert = "certs/server.crt"
key = "certs/server.key"
ca = "pki/root-ca.crt"

[[certificate]]
name = "server"
cert = "certs/server.crt"
key = "certs/server.key"
chain = "certs/ca-chain.pem"
cn = "qtls-server.qsign.local"
sans = ["localhost", "127.0.0.1"]
ttl = "2m"
`,
  );
  return { setup, leaf };
}

/** `qsign --renewal` as qtls-cert-renewal.service runs it (config from QSIGN_CONFIG). */
async function renewal(setup: Setup, args: string[] = [], env: Record<string, string> = {}) {
  const result = await runQsign(["--renewal", ...args], {
    env: { QSIGN_CONFIG: setup.config, ...env },
  });
  const lines = result.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  return { ...result, lines };
}

/** The next event matching `match` logged after `mark` events (bounded wait). */
function eventAfter(
  daemon: Daemon,
  mark: number,
  match: (e: AuditEvent) => boolean,
): Promise<AuditEvent> {
  return daemon.waitFor((e) => daemon.events.indexOf(e) >= mark && match(e), 30_000);
}

function loadedSerial(event: AuditEvent): string {
  const [loaded] = event.certificates as { serial: string }[];
  return loaded.serial.toLowerCase();
}

/** The leaf serial a fresh handshake sees, after a demo exchange on that connection. */
async function servedSerial(setup: Setup, daemon: Daemon): Promise<string> {
  const tls = await qsignClient(setup.pki, daemon.port());
  try {
    match(
      await exchange(tls, "ping"),
      /^QSIGN 서버 응답 \[세션 #\d+\]: 메시지 수신 완료 \(4 바이트\)/,
    );
    return tls.info.peerLeaf!.serialNumber.toLowerCase();
  } finally {
    await tls.close();
  }
}

/** Every file and link under `dir` with its content or target, to compare two moments. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isSymlink) result[path] = `-> ${await Deno.readLink(path)}`;
    else if (entry.isDirectory) Object.assign(result, await snapshot(path));
    else result[path] = await Deno.readTextFile(path);
  }
  return result;
}

Deno.test("local issuer end to end: a due 2-minute certificate is renewed under a running daemon", async () => {
  await using dir = await tempDir();
  // Issued 65 s ago: 55 s of its three-minute lifetime left, less than a third, so it is due.
  const { setup, leaf } = await setUp(dir.path, { pidFile: true, issuedAgoMs: 65_000 });
  await using daemon = await Daemon.start(["--config", setup.config]);
  const pid = await runningDaemonPid(setup.pidFile!);
  ok(pid !== undefined, "the daemon holds its pid file");
  equal((await Deno.readTextFile(setup.pidFile!)).trim(), String(pid));

  const before = await qsignClient(setup.pki, daemon.port());
  equal(before.info.peerLeaf!.serialNumber.toLowerCase(), leaf.serial.toLowerCase());
  equal(
    await exchange(before, "before"),
    "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (6 바이트)\n",
  );

  const mark = daemon.events.length;
  const renewed = await renewal(setup);
  equal(renewed.code, 0, renewed.stderr);
  equal(renewed.lines.length, 1);
  const [line] = renewed.lines;
  deepEqual([line.result, line.reason, line.old_serial], [
    "renewed",
    "expiring",
    leaf.serial.toLowerCase(),
  ]);
  match(renewed.stderr, new RegExp(`sent SIGHUP to the daemon \\(pid ${pid} `));

  const reloaded = await eventAfter(
    daemon,
    mark,
    (e) => e.event === "reload_ok" && e.trigger === "SIGHUP",
  );
  equal(loadedSerial(reloaded), line.new_serial);
  // Right after the reload, /metrics carries the new notAfter.
  const metrics = await httpGet(`http://127.0.0.1:${daemon.metricsPort}/metrics`);
  const expiry = Math.floor(Date.parse(line.not_after) / 1000);
  ok(
    metrics.body.includes(
      `qtls_cert_expiry_seconds{service="demo",cert="${setup.cert}"} ${expiry}\n`,
    ),
    metrics.body.split("\n").filter((l) => l.startsWith("qtls_cert_expiry")).join("\n"),
  );

  // The connection from before goes on; the next handshake gets the new certificate.
  equal(
    await exchange(before, "still here"),
    "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (10 바이트)\n",
  );
  equal(await servedSerial(setup, daemon), line.new_serial);
  equal(await exchange(before, "bye"), "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (3 바이트)\n");
  await before.close();
  ok(await certMatchesKey(setup.cert, setup.key));

  // Run again: nothing is due, nothing changes, nobody is signalled.
  const files = await snapshot(join(dir.path, "certs"));
  const again = await renewal(setup);
  equal(again.code, 0, again.stderr);
  deepEqual(again.lines.map((l) => [l.result, l.old_serial]), [["fresh", line.new_serial]]);
  deepEqual(await snapshot(join(dir.path, "certs")), files);
  ok(!again.stderr.includes("SIGHUP"), again.stderr);

  equal((await daemon.stop()).code, 0);
  equal(daemon.events.filter((e) => e.event === "reload_failed").length, 0);
  equal(await runningDaemonPid(setup.pidFile!), undefined);
  ok(!(await Deno.stat(setup.pidFile!).then(() => true, () => false)), "pid file removed");
});

Deno.test("without a pid file the daemon's watch sees the store swap its live link", async () => {
  await using dir = await tempDir();
  const { setup, leaf } = await setUp(dir.path, { pidFile: false, issuedAgoMs: 0 });
  await using daemon = await Daemon.start(["--config", setup.config]);
  let served = leaf.serial.toLowerCase();
  equal(await servedSerial(setup, daemon), served);

  // The first run turns the plain files into links through certs/server.crt.live; the second
  // swaps that link only: the configured paths themselves do not change again.
  for (const round of [1, 2]) {
    const mark = daemon.events.length;
    const forced = await renewal(setup, ["--force"]);
    equal(forced.code, 0, forced.stderr);
    const [line] = forced.lines;
    deepEqual([line.result, line.reason, line.old_serial], ["renewed", "forced", served]);
    match(forced.stderr, /no pid_file: a running daemon reloads when its file watch sees/);
    const reloaded = await eventAfter(
      daemon,
      mark,
      (e) => e.event === "reload_ok" && loadedSerial(e) === line.new_serial,
    );
    match(String(reloaded.trigger), /^file change: .*certs\/server\.(crt|key)\b/, `round ${round}`);
    equal(await servedSerial(setup, daemon), line.new_serial);
    served = line.new_serial;
  }
  equal(
    await Deno.readLink(`${setup.cert}.live`).then((t) => t.startsWith("server.crt.versions/")),
    true,
  );
  equal(daemon.events.filter((e) => e.event === "reload_failed").length, 0);
  equal(daemon.events.some((e) => e.trigger === "SIGHUP"), false);
});

Deno.test("renewal killed at each write step: the daemon keeps serving a certificate with its key", async () => {
  await using dir = await tempDir();
  const { setup } = await setUp(dir.path, { pidFile: true, issuedAgoMs: 0 });
  await using daemon = await Daemon.start(["--config", setup.config]);
  const chain = join(dir.path, "certs", "ca-chain.pem");
  for (const step of STORE_STEPS) {
    // Plain files again (what is served now, as regular files), so the adoption steps run too.
    for (const path of [setup.key, setup.cert, chain]) {
      const content = await Deno.readFile(path).catch(() => undefined);
      if (content) {
        await writeFileAtomic(path, content, { mode: path === setup.key ? 0o600 : 0o644 });
      }
    }
    const crashed = await renewal(setup, ["--force"], { QSIGN_TEST_CRASH_AT: step });
    equal(crashed.code, 137, `step ${step}: ${crashed.stderr}`);
    ok(await certMatchesKey(setup.cert, setup.key), `after a crash at ${step}, cert and key match`);
    // Whatever the watch has reloaded so far serves a complete handshake.
    await servedSerial(setup, daemon);

    // A reload now serves exactly what is on disk, and that works too.
    const mark = daemon.events.length;
    daemon.signal("SIGHUP");
    const reloaded = await eventAfter(
      daemon,
      mark,
      (e) => e.trigger === "SIGHUP" && (e.event === "reload_ok" || e.event === "reload_failed"),
    );
    equal(reloaded.event, "reload_ok", `after ${step}: ${JSON.stringify(reloaded)}`);
    const onDisk = (await readServedCertificate(setup.cert))!.serial;
    equal(loadedSerial(reloaded), onDisk);
    equal(await servedSerial(setup, daemon), onDisk, `after a crash at ${step}`);
  }
  const finished = await renewal(setup, ["--force"]);
  equal(finished.code, 0, finished.stderr);
  const leftovers = [...Object.keys(await snapshot(join(dir.path, "certs")))].filter((p) =>
    p.includes(".tmp-")
  );
  deepEqual(leftovers, [], "the next run removes what the crashes left");
  equal(daemon.events.filter((e) => e.event === "reload_failed").length, 0);
});

Deno.test("a second daemon refuses a pid file the first holds; --check-config writes none", async () => {
  await using dir = await tempDir();
  const { setup } = await setUp(dir.path, { pidFile: true, issuedAgoMs: 0 });
  const check = await runQsign(["serve", "--config", setup.config, "--check-config"]);
  equal(check.code, 0, check.stderr);
  equal(await Deno.stat(setup.pidFile!).then(() => true, () => false), false);

  await using first = await Daemon.start(["--config", setup.config]);
  const pid = await runningDaemonPid(setup.pidFile!);
  ok(pid !== undefined);
  const second = await runQsign(["serve", "--config", setup.config]);
  equal(second.code, 1, second.stderr);
  match(
    second.stderr,
    new RegExp(`pid_file: .*qsign\\.pid belongs to a running daemon \\(pid ${pid}\\)`),
  );
  equal(await runningDaemonPid(setup.pidFile!), pid, "the first daemon keeps its pid file");

  // --pid-file (like QSIGN_PID_FILE) overrides the file's pid_file.
  const elsewhere = join(dir.path, "run", "other.pid");
  await using third = await Daemon.start(["--config", setup.config, "--pid-file", elsewhere]);
  const thirdPid = await runningDaemonPid(elsewhere);
  ok(thirdPid !== undefined && thirdPid !== pid);
  equal((await third.stop()).code, 0);
  equal((await first.stop()).code, 0);
  equal(await Deno.stat(elsewhere).then(() => true, () => false), false);
});
