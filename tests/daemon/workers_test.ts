/**
 * `qsign serve --workers 2`: two worker processes accept on one port under a supervisor that is
 * the daemon to the outside. Connections are spread over both workers, with session numbers
 * unique across them; a ticket issued by one resumes on the other; a real Prometheus scrape of
 * the one /metrics equals the sum of the workers' own counters; SIGHUP reloads both and logs
 * once; SIGTERM drains both and removes the pid file; a worker killed with SIGKILL is restarted,
 * logged and counted (and told to systemd as STATUS=) while the daemon goes on serving; systemd
 * hears one sequence.
 */
import { deepEqual, equal, match, notEqual, ok, rejects } from "node:assert/strict";
import { writeFileAtomic } from "../../src/fsutil.ts";
import { openConnection } from "../../src/daemon/client.ts";
import type { TlsClientConfig } from "../../src/tls/config.ts";
import type { TlsConnection } from "../../src/tls/conn.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { startPrometheus } from "../support/services.ts";
import {
  Daemon,
  exchange,
  httpGet,
  issue,
  liveServerFiles,
  makePki,
  NotifySocket,
  processStatus,
  qsignClient,
  qsignClientConfig,
  sampleValue,
  scrapeMetrics,
  serveArgs,
} from "./support.ts";

/** Enough connections that both workers serve some (all on one: 2^-39). */
const MAX_CONNECTIONS = 40;

interface WorkerStatus {
  index: number;
  pid: number;
  alive: boolean;
  restarts: number;
  handshakes_ok: number;
}

async function status(daemon: Daemon): Promise<{
  pid: number;
  counters: Record<string, number>;
  workers: WorkerStatus[];
}> {
  return JSON.parse((await httpGet(`http://127.0.0.1:${daemon.metricsPort}/status`)).body);
}

/** The session number of a demo reply. */
function sessionOf(reply: string): number {
  const number = /\[세션 #(\d+)\]/.exec(reply)?.[1];
  ok(number, reply);
  return Number(number);
}

/** The worker that served session `session`, from its `handshake_ok` line. */
async function workerOf(daemon: Daemon, session: number): Promise<number> {
  const event = await daemon.waitFor((e) => e.event === "handshake_ok" && e.session === session);
  return Number(event.worker);
}

/** One conversation with `config`: the worker that served it and its handshake facts. */
async function visit(daemon: Daemon, config: TlsClientConfig) {
  const tls = await openConnection({ hostname: "127.0.0.1", port: daemon.port() }, config);
  try {
    const session = sessionOf(await exchange(tls, "hello"));
    return { session, worker: await workerOf(daemon, session), info: tls.info };
  } finally {
    await tls.close();
  }
}

/**
 * Opens connections (fresh clients) until both workers hold one; returns them by worker. A
 * connection to a worker that already holds one is closed, and its slot freed, before the next.
 */
async function oneOnEach(daemon: Daemon, pki: Awaited<ReturnType<typeof makePki>>) {
  const held = new Map<number, TlsConnection>();
  for (let i = 0; i < MAX_CONNECTIONS && held.size < 2; i++) {
    const tls = await qsignClient(pki, daemon.port());
    const session = sessionOf(await exchange(tls, "hold"));
    const worker = await workerOf(daemon, session);
    if (!held.has(worker)) {
      held.set(worker, tls);
      continue;
    }
    await tls.close();
    await daemon.waitFor((e) => e.event === "closed" && e.session === session);
  }
  equal(held.size, 2, "both workers got a connection");
  return held;
}

Deno.test("two workers: connections spread, tickets resume across them, one aggregated /metrics", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--workers", "2"]));
  equal(daemon.events.filter((e) => e.event === "ready").length, 1);
  equal(daemon.events.filter((e) => e.event === "listening").length, 1);
  match(daemon.stderr, /workers: 2 processes/);
  equal((daemon.stderr.match(/^ {2}service default: port \d+/gm) ?? []).length, 1);

  // Resumption: the first full handshake's worker issued every ticket the client holds until a
  // connection reaches the other worker, which must open one of them.
  const config = await qsignClientConfig(pki, daemon.port());
  const first = await visit(daemon, config);
  equal(first.info.resumed, false);
  let other;
  for (let i = 0; i < MAX_CONNECTIONS && !other; i++) {
    const next = await visit(daemon, config);
    if (next.worker !== first.worker) other = next;
  }
  ok(other, "a connection reached the other worker");
  equal(other.info.resumed, true, "the other worker resumed the first worker's ticket");

  // Distribution: fresh clients, session numbers unique across the workers.
  const sessions: number[] = [first.session];
  const byWorker = new Map<number, number>();
  for (let i = 0; i < 12; i++) {
    const tls = await qsignClient(pki, daemon.port());
    const session = sessionOf(await exchange(tls, "spread"));
    await tls.close();
    sessions.push(session);
    const worker = await workerOf(daemon, session);
    byWorker.set(worker, (byWorker.get(worker) ?? 0) + 1);
  }
  equal(new Set(sessions).size, sessions.length, `session numbers are unique: ${sessions}`);

  const handshakes = daemon.events.filter((e) => e.event === "handshake_ok").length;
  const { counters, workers } = await status(daemon);
  equal(workers.length, 2);
  ok(workers.every((w) => w.alive && w.handshakes_ok > 0), JSON.stringify(workers));
  equal(workers[0].handshakes_ok + workers[1].handshakes_ok, handshakes);
  equal(counters.handshakes_ok, handshakes);

  // Prometheus scrapes the supervisor only: its sum is the workers' sum.
  await using prometheus = await startPrometheus(dir.path, [`127.0.0.1:${daemon.metricsPort}`]);
  let scraped: number | undefined;
  for (let i = 0; i < 60 && scraped !== handshakes; i++) {
    const result = await prometheus.query('sum(qtls_handshakes_total{result="ok"})');
    scraped = result.length ? Number(result[0].value[1]) : undefined;
    if (scraped !== handshakes) await new Promise((resolve) => setTimeout(resolve, 500));
  }
  equal(scraped, handshakes);
  const up = await prometheus.query("qtls_workers_alive");
  equal(Number(up[0].value[1]), 2);
  const samples = await scrapeMetrics(daemon);
  equal(sampleValue(samples, "qtls_workers_configured"), 2);
  equal(sampleValue(samples, "qtls_handshake_duration_seconds_count"), handshakes);
  equal(sampleValue(samples, "qtls_sessions_total"), handshakes);
  // Not summed: which build serves (every worker's is the same) and when the certificate ends.
  equal(sampleValue(samples, "qtls_crypto_backend_info"), 1);
  const notAfter = (await status(daemon) as unknown as {
    services: { certificates: { notAfter: string }[] }[];
  }).services[0].certificates[0].notAfter;
  equal(
    sampleValue(samples, "qtls_cert_expiry_seconds"),
    Math.floor(Date.parse(notAfter) / 1000),
  );
});

Deno.test("two workers: SIGHUP reloads both and logs once; SIGTERM drains both", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const live = await liveServerFiles(dir.path, pki);
  const pidFile = `${dir.path}/qsign.pid`;
  await using daemon = await Daemon.start(
    serveArgs(pki, ["--workers", "2", "--pid-file", pidFile, "--drain-timeout", "10m"], live),
  );
  const supervisor = (await status(daemon)).pid;
  equal(Number((await Deno.readTextFile(pidFile)).trim()), supervisor);

  const renewed = await issue(pki, "server", "renewed.qsign.local", "renewed", {
    sans: ["DNS:localhost", "IP:127.0.0.1"],
  });
  await writeFileAtomic(live.key, await Deno.readFile(renewed.key), { mode: 0o600 });
  await writeFileAtomic(live.cert, await Deno.readFile(renewed.cert));
  daemon.signal("SIGHUP");
  const reloaded = await daemon.waitFor((e) => e.event === "reload_ok" && e.trigger === "SIGHUP");
  equal(reloaded.workers, 2);
  equal(
    daemon.events.filter((e) => e.event === "reload_ok" && e.trigger === "SIGHUP").length,
    1,
    "one reload_ok for both workers",
  );
  const reloads = sampleValue(await scrapeMetrics(daemon), "qtls_reloads_total", { result: "ok" });
  ok(reloads !== undefined && reloads >= 1 && reloads <= 2, `reloads: ${reloads}`);

  // Every worker serves the renewed certificate.
  const held = await oneOnEach(daemon, pki);
  for (const tls of held.values()) match(tls.info.peerLeaf!.subject, /CN=renewed\.qsign\.local/);

  daemon.signal("SIGTERM");
  const stopping = await daemon.waitFor((e) => e.event === "stopping");
  equal(stopping.open_connections, 2);
  await rejects(
    Deno.connect({ hostname: "127.0.0.1", port: daemon.port() }),
    Deno.errors.ConnectionRefused,
  );
  // Both in-flight connections go on during the drain and end when their clients are done.
  for (const tls of held.values()) {
    match(await exchange(tls, "still here"), /메시지 수신 완료 \(10 바이트\)/);
    await tls.close();
  }
  equal((await daemon.exited()).code, 0);
  equal(daemon.events.at(-1)!.event, "stopped");
  equal(daemon.events.filter((e) => e.event === "stopping").length, 1);
  await rejects(Deno.stat(pidFile), Deno.errors.NotFound);
});

Deno.test("a killed worker is restarted, logged and counted; systemd hears one daemon", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const socket = new NotifySocket(`${dir.path}/notify.sock`);
  try {
    await using daemon = await Daemon.start(serveArgs(pki, ["--workers", "2"]), {
      env: { NOTIFY_SOCKET: socket.path },
    });
    const ready = await socket.next((m) => m.startsWith("READY=1"));
    match(socket.messages[ready], /\nSTATUS=serving 1 service\(s\) with 2 workers/);

    // Both workers count handshakes before one of them dies.
    for (const tls of (await oneOnEach(daemon, pki)).values()) await tls.close();
    const handshakes = () => daemon.events.filter((e) => e.event === "handshake_ok").length;
    const okHandshakes = async () =>
      (await scrapeMetrics(daemon)).filter((s) =>
        s.name === "qtls_handshakes_total" && s.labels.result === "ok"
      ).reduce((sum, s) => sum + s.value, 0);
    equal(await okHandshakes(), handshakes());

    const before = await status(daemon);
    const victim = before.workers[1].pid;
    Deno.kill(victim, "SIGKILL");
    const exited = await daemon.waitFor((e) => e.event === "worker_exited");
    equal(exited.worker, 1);
    equal(exited.pid, victim);
    equal(exited.signal, "SIGKILL");
    const restarted = await daemon.waitFor((e) => e.event === "worker_restarted");
    notEqual(restarted.pid, victim);
    const lost = await socket.next((m) => m.startsWith("STATUS="), ready + 1);
    match(socket.messages[lost], /with 1 of 2 workers \(worker 1 exited, restarting in \d+ ms\)$/);
    const back = await socket.next((m) => m.startsWith("STATUS="), lost + 1);
    match(socket.messages[back], /with 2 of 2 workers \(worker 1 restarted\)$/);

    const after = await status(daemon);
    deepEqual(after.workers.map((w) => [w.alive, w.restarts]), [[true, 0], [true, 1]]);
    equal(after.workers[1].pid, restarted.pid);
    equal(after.workers[0].pid, before.workers[0].pid);
    const samples = await scrapeMetrics(daemon);
    equal(sampleValue(samples, "qtls_worker_restarts_total", { worker: "1" }), 1);
    equal(sampleValue(samples, "qtls_workers_alive"), 2);
    // The restarted worker serves too, and the daemon's counters keep the dead worker's count.
    const held = await oneOnEach(daemon, pki);
    for (const tls of held.values()) await tls.close();
    equal(await okHandshakes(), handshakes());

    daemon.signal("SIGHUP");
    const reloading = await socket.next((m) => m.startsWith("RELOADING=1"), ready);
    await socket.next((m) => m.startsWith("READY=1"), reloading);
    equal((await daemon.stop("SIGTERM")).code, 0);
    await socket.next((m) => m === "STOPPING=1", reloading);
    // Only the supervisor spoke: one READY per start and reload, no worker's own.
    deepEqual(
      socket.messages.map((m) => m.split("\n")[0].split("=")[0]),
      ["READY", "STATUS", "STATUS", "RELOADING", "READY", "STOPPING"],
    );
  } finally {
    await socket.close();
  }
});

Deno.test("workers is validated: 0 and 257 are configuration errors, not stack traces", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  for (const workers of ["0", "257"]) {
    const flag = await runQsign(["serve", ...serveArgs(pki, ["--workers", workers])]);
    equal(flag.code, 2, flag.stderr);
    match(flag.stderr, /^qsign: .*--workers.*256/m);
    const env = await runQsign(["serve", ...serveArgs(pki)], { env: { QSIGN_WORKERS: workers } });
    equal(env.code, 2, env.stderr);
    match(env.stderr, /QSIGN_WORKERS/);
    ok(!/\bat \S+:\d+:\d+/.test(flag.stderr + env.stderr), "no stack trace");
  }
});

Deno.test("max_connections counts the daemon's connections, whichever worker holds them", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, [
    "--workers",
    "2",
    "--max-connections",
    "3",
    "--max-handshakes-per-ip",
    "0",
  ]));
  // Two on one worker and one on the other (or three across both): the daemon is full.
  const held = [...(await oneOnEach(daemon, pki)).values()];
  held.push(await qsignClient(pki, daemon.port()));
  for (let i = 0; i < 4; i++) {
    const surplus = await Deno.connect({ hostname: "127.0.0.1", port: daemon.port() });
    equal(await surplus.read(new Uint8Array(16)).catch(() => null), null, "refused before TLS");
    surplus.close();
  }
  const refusals = sampleValue(await scrapeMetrics(daemon), "qtls_handshake_failures_total", {
    reason: "max_connections",
  });
  equal(refusals, 4);
  for (const tls of held) await tls.close();
  await daemon.waitForCount((e) => e.event === "closed", 3);
  const late = await qsignClient(pki, daemon.port());
  match(await exchange(late, "late"), /\[세션 #\d+\]/);
  await late.close();
});

Deno.test("SIGHUP with a changed workers setting says that it needs a restart", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const config = `${dir.path}/qsign.toml`;
  await Deno.writeTextFile(config, "workers = 2\n");
  await using daemon = await Daemon.start(serveArgs(pki, ["--config", config]));
  equal((await status(daemon)).workers.length, 2);
  await Deno.writeTextFile(config, "workers = 3\n");
  daemon.signal("SIGHUP");
  const warning = await daemon.waitFor((e) => e.event === "restart_required");
  deepEqual(warning.workers, { running: 2, configured: 3 });
  await daemon.waitFor((e) => e.event === "reload_ok" && e.trigger === "SIGHUP");
  equal((await status(daemon)).workers.length, 2);
});

/** Whether process `pid` has ended (gone, or a zombie nobody has reaped yet). */
async function ended(pid: number): Promise<boolean> {
  const status = await processStatus(pid);
  return status === undefined || /^State:\s+Z/m.test(status);
}

Deno.test("workers do not outlive a supervisor killed with SIGKILL", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--workers", "2"]));
  const pids = (await status(daemon)).workers.map((w) => w.pid);
  equal((await daemon.stop("SIGKILL")).signal, "SIGKILL");
  // exited() has seen stdout close, which the workers held open: both have ended.
  for (const pid of pids) ok(await ended(pid), `worker ${pid} still runs`);
  equal(daemon.events.filter((e) => e.event === "supervisor_gone").length, 2);
});

Deno.test("a prompt secret needs one process: workers > 1 refuse it up front", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const result = await runQsign([
    "serve",
    ...serveArgs(pki, ["--workers", "2", "--key-passphrase", "prompt"]),
  ]);
  equal(result.code, 2, result.stderr);
  match(result.stderr, /^qsign: --key-passphrase: "prompt" asks on the terminal.*workers = 1/m);
});
