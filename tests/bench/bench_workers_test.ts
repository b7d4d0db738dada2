/**
 * `qsign bench --workers N` against a real `qsign serve`: the load split between client
 * processes adds up to what was asked and to what the server saw, resumption works in each
 * process, failures are summed by alert, a failed client process is reported, and a --workers
 * the load cannot be split into is refused. Small bounded loads; nothing here asserts a speed.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import type { BenchReport, ProcessReport } from "../../src/bench/report.ts";
import { splitEvenly } from "../../src/bench/processes.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { Daemon, makePki, type Pki, serveArgs } from "../daemon/support.ts";

const SERVE_LIMITS = ["--max-handshakes-per-ip", "0"];

function benchArgs(pki: Pki, port: number, ca = pki.root): string[] {
  return [
    "bench",
    ...["--connect", `127.0.0.1:${port}`, "--cert", pki.clientCert, "--key", pki.clientKey],
    ...["--ca", ca, "--json"],
  ];
}

async function bench(args: string[]): Promise<{ code: number; report: BenchReport }> {
  const out = await runQsign(args);
  try {
    return { code: out.code, report: JSON.parse(out.stdout) };
  } catch {
    throw new Error(
      `qsign bench printed no JSON (exit ${out.code}):\n${out.stdout}\n${out.stderr}`,
    );
  }
}

/** The per-process figures, which every process that ran has. */
function ran(p: ProcessReport): Required<Pick<ProcessReport, "handshakes" | "client" | "errors">> {
  ok(p.handshakes && p.client && p.errors, `process ${p.process} failed: ${p.stderrTail}`);
  return { handshakes: p.handshakes, client: p.client, errors: p.errors };
}

const total = (report: BenchReport, field: (p: ProcessReport) => number) =>
  report.processes!.reduce((sum, p) => sum + field(p), 0);

Deno.test("splitEvenly: shares differ by at most one, larger first, and add up", () => {
  deepEqual(splitEvenly(7, 2), [4, 3]);
  deepEqual(splitEvenly(6, 3), [2, 2, 2]);
  deepEqual(splitEvenly(5, 4), [2, 1, 1, 1]);
  deepEqual(splitEvenly(3, 3), [1, 1, 1]);
});

Deno.test("bench --workers 2: the processes' shares add up to the run, and to what the server saw", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const { code, report } = await bench([
    ...benchArgs(pki, daemon.port()),
    ...["--handshakes", "7", "--concurrency", "3", "--workers", "2"],
  ]);
  equal(code, 0, JSON.stringify(report.errors));
  equal(report.settings.workers, 2);
  const processes = report.processes!;
  deepEqual(processes.map((p) => [p.process, p.share, p.exitCode]), [
    [1, { handshakes: 4, concurrency: 2 }, 0],
    [2, { handshakes: 3, concurrency: 1 }, 0],
  ]);
  ok(processes[0].pid !== processes[1].pid);
  const parts = processes.map(ran);
  deepEqual(parts.map((p) => p.handshakes.completed), [4, 3]);
  deepEqual(
    { ...report.handshakes, perSecond: undefined },
    { attempted: 7, completed: 7, resumed: 0, full: 7, failed: 0, perSecond: undefined },
  );
  for (const field of ["attempted", "completed", "resumed", "full", "failed"] as const) {
    equal(report.handshakes[field], total(report, (p) => p.handshakes![field]), field);
  }
  ok(report.handshakes.perSecond > 0);
  equal(report.stoppedBy, "count");
  deepEqual(report.errors, []);
  equal(report.client.cpuUserMs, total(report, (p) => p.client!.cpuUserMs));
  equal(report.client.rssPeakBytes, total(report, (p) => p.client!.rssPeakBytes));
  // The merged samples hold every process's extremes.
  const l = report.latencyMs!;
  equal(l.min, Math.min(...processes.map((p) => p.latencyMs!.min)));
  equal(l.max, Math.max(...processes.map((p) => p.latencyMs!.max)));
  ok(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, JSON.stringify(l));
  // The run lasts at least as long as each of its processes.
  ok(processes.every((p) => p.durationMs! <= report.durationMs));
  equal(report.negotiated?.version, "TLSv1.3");

  await daemon.waitForCount((e) => e.event === "closed", 7);
  equal(daemon.events.filter((e) => e.event === "handshake_ok").length, 7);
});

Deno.test("bench --workers 2 --resume: each process warms up its own pool, then resumes", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const { code, report } = await bench([
    ...benchArgs(pki, daemon.port()),
    ...["--handshakes", "6", "--concurrency", "4", "--workers", "2", "--resume"],
  ]);
  equal(code, 0, JSON.stringify(report.errors));
  equal(report.handshakes.completed, 6);
  equal(report.handshakes.resumed, 6);
  equal(report.handshakes.ticketReuses, 0);
  deepEqual(report.processes!.map((p) => p.warmup?.connections), [2, 2]);
  deepEqual(report.processes!.map((p) => p.handshakes?.resumed), [3, 3]);
  equal(report.warmup!.connections, 4);
  equal(report.warmup!.tickets, total(report, (p) => p.warmup!.tickets));

  const handshakes = await daemon.waitForCount((e) => e.event === "handshake_ok", 10);
  equal(handshakes.filter((e) => e.resumed === false).length, 4, "the two warm-ups");
  equal(handshakes.filter((e) => e.resumed === true).length, 6);
});

Deno.test("bench --workers 2: failures are summed by alert; the exit status says so", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const stranger = await makePki(`${dir.path}/other`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const { code, report } = await bench([
    ...benchArgs(pki, daemon.port(), stranger.root),
    ...["--handshakes", "5", "--concurrency", "2", "--workers", "2"],
  ]);
  equal(code, 1);
  equal(report.handshakes.failed, 5);
  equal(report.latencyMs, undefined);
  const counts = (errors: BenchReport["errors"]) =>
    errors.map(({ phase, kind, direction, count }) => ({ phase, kind, direction, count }));
  deepEqual(counts(report.errors), [
    { phase: "handshake", kind: "unknown_ca", direction: "sent", count: 5 },
  ]);
  deepEqual(report.processes!.map((p) => counts(ran(p).errors)[0].count), [3, 2]);
  await daemon.waitForCount((e) => e.event === "handshake_failed", 5);
});

Deno.test("bench --workers: a client process that fails is reported with its exit status and stderr", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  // The trust file is a pipe. The parent, the only process while it loads its configuration,
  // reads the real roots; every later reader, each client process, gets text that is not PEM (or
  // nothing, when two open the pipe at once) and refuses it as an operator's mistake.
  const ca = `${dir.path}/roots.fifo`;
  const made = await new Deno.Command("mkfifo", { args: [ca] }).output();
  equal(made.code, 0);
  let stopped = false;
  const feed = (async () => {
    await Deno.writeTextFile(ca, await Deno.readTextFile(pki.root));
    while (!stopped) {
      // Between writers a reader that holds the pipe open reads its end, so it is not kept
      // reading text after text.
      await new Promise((resolve) => setTimeout(resolve, 20));
      await Deno.writeTextFile(ca, "not a certificate\n");
    }
  })();
  const out = await runQsign([
    ...benchArgs(pki, daemon.port(), ca),
    ...["--handshakes", "2", "--workers", "2"],
  ]);
  // Every qsign process has ended, and the feeder waits for a reader that will not come. Opening
  // the pipe for reading and writing does not block, and ends that wait.
  stopped = true;
  const endOfFeed = await Deno.open(ca, { read: true, write: true });
  await feed;
  endOfFeed.close();
  equal(out.code, 1, out.stderr);
  const report: BenchReport = JSON.parse(out.stdout);
  equal(report.handshakes.attempted, 0);
  for (const p of report.processes!) {
    equal(p.exitCode, 2, JSON.stringify(p));
    equal(p.handshakes, undefined);
    ok(p.stderrTail!.includes(ca), p.stderrTail);
  }
  ok(/^bench process 1: qsign: /m.test(out.stderr), out.stderr);
  ok(!/internal error|\n\s+at /.test(out.stderr), out.stderr);

  const text = await runQsign([
    ...benchArgs(pki, daemon.port()).filter((arg) => arg !== "--json"),
    ...["--handshakes", "2", "--workers", "2"],
  ]);
  equal(text.code, 0, text.stderr);
  for (const expected of [/in 2 client processes/, /process 1 +pid \d+, 1 connections/]) {
    ok(expected.test(text.stdout), `${expected} in:\n${text.stdout}`);
  }
  await daemon.waitForCount((e) => e.event === "closed", 2);
});

Deno.test("bench --workers: more processes than connections is refused, naming the options", async () => {
  const common = ["bench", "--connect", "127.0.0.1:1", "--ca", "roots.pem"];
  const concurrency = await runQsign([...common, "--workers", "3", "--concurrency", "2"]);
  equal(concurrency.code, 2);
  ok(
    /^qsign: bench: --workers 3 is more than --concurrency 2: each client process needs at least one connection/
      .test(concurrency.stderr),
    concurrency.stderr,
  );
  const handshakes = await runQsign([
    ...common,
    ...["--workers", "3", "--concurrency", "8", "--handshakes", "2"],
  ]);
  equal(handshakes.code, 2);
  ok(/--workers 3 is more than --handshakes 2/.test(handshakes.stderr), handshakes.stderr);
  for (const out of [concurrency, handshakes]) {
    equal(out.stderr.trim().split("\n").length, 1, out.stderr);
  }
});
