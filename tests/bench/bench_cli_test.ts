/**
 * `qsign bench` against a real `qsign serve` (and, for echo mode, `qsign serve --mode proxy` in
 * front of a TCP echo): counts, resumption, the three data modes, errors by alert, the time
 * bound, and the text report. Small bounded loads; nothing here asserts a speed.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import type { BenchReport } from "../../src/bench/report.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { Daemon, makePki, type Pki, serveArgs } from "../daemon/support.ts";

const SERVE_LIMITS = ["--max-handshakes-per-ip", "0"];

function clientArgs(pki: Pki, port: number, ca = pki.root): string[] {
  return [
    "bench",
    ...["--connect", `127.0.0.1:${port}`, "--cert", pki.clientCert, "--key", pki.clientKey],
    ...["--ca", ca],
  ];
}

async function bench(args: string[]): Promise<{ code: number; report: BenchReport }> {
  const out = await runQsign([...args, "--json"]);
  let report: BenchReport;
  try {
    report = JSON.parse(out.stdout);
  } catch {
    throw new Error(
      `qsign bench printed no JSON (exit ${out.code}):\n${out.stdout}\n${out.stderr}`,
    );
  }
  return { code: out.code, report };
}

function handshakeEvents(daemon: Daemon, resumed: boolean) {
  return daemon.events.filter((e) => e.event === "handshake_ok" && e.resumed === resumed);
}

/** Waits until the daemon has logged `count` events matching `match` (its log is asynchronous). */
async function waitForCount(
  daemon: Daemon,
  count: number,
  match: (e: { event: string }) => boolean,
) {
  await daemon.waitFor(() => daemon.events.filter(match).length >= count, 10_000);
}

Deno.test("bench: full handshakes are counted, timed and match what the server saw", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const { code, report } = await bench([
    ...clientArgs(pki, daemon.port()),
    ...["--handshakes", "6", "--concurrency", "2"],
  ]);
  equal(code, 0);
  deepEqual(
    { ...report.handshakes, perSecond: undefined },
    { attempted: 6, completed: 6, resumed: 0, full: 6, failed: 0, perSecond: undefined },
  );
  ok(report.handshakes.perSecond > 0);
  equal(report.stoppedBy, "count");
  equal(report.settings.workers, 1);
  equal(report.processes, undefined, "one process: no per-process section");
  deepEqual(report.errors, []);
  equal(report.unclosed, 0, "qsign answers close_notify");
  const l = report.latencyMs!;
  ok(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, JSON.stringify(l));
  deepEqual(report.negotiated, {
    version: "TLSv1.3",
    cipherSuite: "TLS_AES_256_GCM_SHA384",
    group: "SecP384r1MLKEM1024",
    serverSignatureScheme: "mldsa65",
    clientSignatureScheme: "mldsa65",
    helloRetry: false,
  });
  equal(report.throughput, undefined);
  ok(report.client.cpuUserMs > 0 && report.client.rssPeakBytes > 0);
  await waitForCount(daemon, 6, (e) => e.event === "closed");
  equal(handshakeEvents(daemon, false).length, 6);
});

Deno.test("bench --resume: every counted handshake resumes after the warm-up", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const { code, report } = await bench([
    ...clientArgs(pki, daemon.port()),
    ...["--handshakes", "6", "--concurrency", "2", "--resume"],
  ]);
  equal(code, 0);
  equal(report.handshakes.completed, 6);
  equal(report.handshakes.resumed, 6);
  equal(report.handshakes.ticketReuses, 0, "qsign issues a fresh ticket on every handshake");
  deepEqual(report.warmup, { connections: 2, failed: 0, tickets: report.warmup!.tickets });
  ok(report.warmup!.tickets >= 2);
  await waitForCount(daemon, 8, (e) => e.event === "closed");
  equal(handshakeEvents(daemon, false).length, 2, "the warm-up");
  equal(handshakeEvents(daemon, true).length, 6);
});

Deno.test("bench --bytes: reply and sink modes against qsign's echo service", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  for (const mode of ["reply", "sink"]) {
    const { code, report } = await bench([
      ...clientArgs(pki, daemon.port()),
      ...["--handshakes", "3", "--concurrency", "2", "--bytes", "100000", "--bytes-mode", mode],
    ]);
    equal(code, 0, JSON.stringify(report.errors));
    equal(report.settings.bytesMode, mode);
    equal(report.throughput!.transfers, 3);
    equal(report.throughput!.bytesSent, 300_000);
    // qsign answers each read (one record or several that arrived together) with a reply line
    // naming its length, and the client has checked that they add up: at least one line each.
    const shortestReply = "(100000 bytes)\n".length;
    ok(
      report.throughput!.bytesReceived >= 3 * shortestReply,
      `${report.throughput!.bytesReceived}`,
    );
    ok(report.throughput!.bytesPerSecond > 0);
  }
  await waitForCount(daemon, 6, (e) => e.event === "closed");
  const received = daemon.events.filter((e) => e.event === "closed")
    .map((e) => e.bytes_received);
  deepEqual(received, Array(6).fill(100_000));
});

/** A TCP echo server: every byte back, half-close answered with half-close. */
function tcpEcho() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connections: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      connections.push((async () => {
        try {
          const buffer = new Uint8Array(65536);
          for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
            for (let offset = 0; offset < n;) {
              offset += await conn.write(buffer.subarray(offset, n));
            }
          }
          await conn.closeWrite();
        } catch {
          // the proxy reset the connection; nothing to echo
        } finally {
          conn.close();
        }
      })());
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(connections);
    },
  };
}

Deno.test("bench --bytes-mode echo: byte-exact echo through qsign's proxy mode", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using echo = tcpEcho();
  await using daemon = await Daemon.start(
    serveArgs(pki, [...SERVE_LIMITS, "--mode", "proxy", "--target", `127.0.0.1:${echo.port}`]),
  );
  const args = [...clientArgs(pki, daemon.port()), "--handshakes", "2", "--bytes", "200000"];
  const echoed = await bench([...args, "--bytes-mode", "echo"]);
  equal(echoed.code, 0, JSON.stringify(echoed.report.errors));
  equal(echoed.report.throughput!.bytesSent, 400_000);
  equal(echoed.report.throughput!.bytesReceived, 400_000);

  // An echo is not qsign's reply protocol: reply mode says so instead of waiting.
  const replied = await bench([...args, "--bytes-mode", "reply"]);
  equal(replied.code, 1);
  equal(replied.report.handshakes.completed, 2);
  deepEqual(
    replied.report.errors.map(({ phase, kind, count }) => ({ phase, kind, count })),
    [{ phase: "data", kind: "unexpected_reply", count: 2 }],
  );
  await waitForCount(daemon, 4, (e) => e.event === "closed");
});

Deno.test("bench: failures are counted by alert; the exit status says so", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const stranger = await makePki(`${dir.path}/other`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const { code, report } = await bench([
    ...clientArgs(pki, daemon.port(), stranger.root),
    ...["--handshakes", "4", "--concurrency", "2"],
  ]);
  equal(code, 1);
  deepEqual(
    { ...report.handshakes, perSecond: undefined },
    { attempted: 4, completed: 0, resumed: 0, full: 0, failed: 4, perSecond: undefined },
  );
  equal(report.latencyMs, undefined);
  deepEqual(
    report.errors.map(({ phase, kind, direction, count }) => ({ phase, kind, direction, count })),
    [{ phase: "handshake", kind: "unknown_ca", direction: "sent", count: 4 }],
  );
  await waitForCount(daemon, 4, (e) => e.event === "handshake_failed");
});

Deno.test("bench: the duration limit stops the load; the text report has the figures", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const stopped = await bench([
    ...clientArgs(pki, daemon.port()),
    ...["--handshakes", "1000", "--duration-limit", "0s"],
  ]);
  equal(stopped.code, 0);
  equal(stopped.report.stoppedBy, "time");
  equal(stopped.report.handshakes.attempted, 0);

  const text = await runQsign([...clientArgs(pki, daemon.port()), "--handshakes", "2"]);
  equal(text.code, 0, text.stderr);
  for (const expected of [/2 of 2 completed/, /handshakes\/s/, /p50 [\d.]+ +p90 [\d.]+ +p99/]) {
    ok(expected.test(text.stdout), `${expected} in:\n${text.stdout}`);
  }
  await waitForCount(daemon, 2, (e) => e.event === "closed");
});

Deno.test("bench --sigalgs: the schemes offered decide the server's signature", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, SERVE_LIMITS));
  const args = [...clientArgs(pki, daemon.port()), "--handshakes", "2"];
  const offered = await bench([...args, "--sigalgs", "mldsa87,mldsa65"]);
  equal(offered.code, 0, JSON.stringify(offered.report.errors));
  deepEqual(offered.report.settings.signatureSchemes, ["mldsa87", "mldsa65"]);
  equal(offered.report.negotiated?.serverSignatureScheme, "mldsa65");

  // The server's only chain is ML-DSA-65: nothing it can sign with.
  const refused = await bench([...args, "--sigalgs", "ecdsa_secp384r1_sha384"]);
  equal(refused.code, 1);
  deepEqual(
    refused.report.errors.map(({ phase, kind, direction, count }) => ({
      phase,
      kind,
      direction,
      count,
    })),
    [{ phase: "handshake", kind: "handshake_failure", direction: "received", count: 2 }],
  );

  const unknown = await runQsign([...args, "--sigalgs", "mldsa66"]);
  equal(unknown.code, 2);
  ok(/--sigalgs: unknown signature scheme mldsa66/.test(unknown.stderr), unknown.stderr);
  await waitForCount(daemon, 2, (e) => e.event === "handshake_failed");
});

Deno.test("bench: usage errors exit 2", async () => {
  const missing = await runQsign(["bench", "--ca", "x.pem"]);
  equal(missing.code, 2);
  ok(/--connect is required/.test(missing.stderr), missing.stderr);
  const mode = await runQsign([
    "bench",
    "--connect",
    "127.0.0.1:1",
    "--ca",
    "x",
    "--bytes-mode",
    "x",
  ]);
  equal(mode.code, 2);
});
