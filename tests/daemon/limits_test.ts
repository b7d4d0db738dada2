/**
 * Limits under a bounded flood on loopback: idle TCP connections and slow handshakes from one
 * address are rate-limited, timed out and counted, while a legitimate client from another
 * loopback address completes its handshake; resident memory stays under a stated bound. Plus
 * --max-connections and --idle-timeout.
 */
import { equal, ok } from "node:assert/strict";
import { tempDir } from "../support/env.ts";
import {
  Daemon,
  exchange,
  makePki,
  PEER_ECHO_CLIENT,
  qsignClient,
  runPeer,
  scrapeMetrics,
  serveArgs,
} from "./support.ts";

/** The daemon may use at most this much resident memory during the flood below. */
const RSS_BOUND_BYTES = 256 * 1024 * 1024;

async function metricValues(daemon: Daemon, name: string): Promise<Record<string, number>> {
  const values: Record<string, number> = {};
  for (const sample of (await scrapeMetrics(daemon)).filter((s) => s.name === name)) {
    // Keyed by the labels other than the service's name (one service here): `reason`, or "".
    const key = Object.entries(sample.labels).filter(([k]) => k !== "service")
      .map(([, v]) => v).join(",");
    values[key] = (values[key] ?? 0) + sample.value;
  }
  return values;
}

/** The daemon's resident memory, as it reports it (Deno.memoryUsage, from the kernel). */
async function rssBytes(daemon: Daemon): Promise<number> {
  return (await metricValues(daemon, "process_resident_memory_bytes"))[""];
}

/** A TLS record header announcing a 512-byte handshake record, of which nothing more comes. */
const STALLED_CLIENT_HELLO = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]);

Deno.test("a flood of idle and slow-handshake connections does not keep a legitimate client out", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  // The memory bound is one process's (each worker has its own runtime): one worker.
  await using daemon = await Daemon.start(serveArgs(pki, [
    "--workers",
    "1",
    "--max-handshakes-per-ip",
    "50",
    "--handshake-timeout",
    "2s",
  ]));
  const port = daemon.port();
  const baseline = await rssBytes(daemon);

  const idle = 400;
  const slow = 100;
  const flood: Deno.TcpConn[] = [];
  let peakRss = baseline;
  try {
    for (let i = 0; i < idle + slow; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      flood.push(conn);
      if (i >= idle) await conn.write(STALLED_CLIENT_HELLO).catch(() => {});
    }
    peakRss = Math.max(peakRss, await rssBytes(daemon));

    // The legitimate client comes from another loopback address, so the per-address limit that
    // holds the flood back does not apply to it.
    const script = PEER_ECHO_CLIENT.replace(
      'host: "127.0.0.1",',
      'host: "127.0.0.1", localAddress: "127.0.0.2",',
    );
    const result = await runPeer(script, [
      String(port),
      pki.root,
      pki.clientCert,
      pki.clientKey,
      "let me in",
    ]) as {
      reply: string;
    };
    equal(result.reply, "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (9 바이트)\n");
    peakRss = Math.max(peakRss, await rssBytes(daemon));

    // Admitted flood connections are cut at the handshake timeout.
    await daemon.waitFor((e) => e.event === "handshake_failed" && e.alert === "handshake_timeout");
    const deadline = Date.now() + 20_000;
    while (
      (await metricValues(daemon, "qtls_connections_active"))[""] > 0 && Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    equal((await metricValues(daemon, "qtls_connections_active"))[""], 0);
    const failures = await metricValues(daemon, "qtls_handshake_failures_total");
    ok(failures.rate_limited > 0, JSON.stringify(failures));
    ok(failures.handshake_timeout > 0, JSON.stringify(failures));
    equal(
      failures.rate_limited + failures.handshake_timeout,
      idle + slow,
      JSON.stringify(failures),
    );
    const refused = daemon.events.filter((e) => e.event === "refused");
    ok(
      refused.length >= 1 && refused.length < 50,
      `refusals are logged in summary, got ${refused.length} lines`,
    );
  } finally {
    for (const conn of flood) {
      try {
        conn.close();
      } catch {
        // Closed by the daemon already.
      }
    }
  }
  ok(peakRss < RSS_BOUND_BYTES, `RSS ${peakRss} (baseline ${baseline}) exceeds ${RSS_BOUND_BYTES}`);
});

Deno.test("--max-connections refuses the surplus and --idle-timeout closes quiet sessions", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, [
    "--max-connections",
    "3",
    "--max-handshakes-per-ip",
    "0",
    "--idle-timeout",
    "1s",
  ]));
  const port = daemon.port();

  const sessions = await Promise.all([1, 2, 3].map(() => qsignClient(pki, port)));
  // A fourth connection is closed at once, before any TLS.
  const surplus = await Deno.connect({ hostname: "127.0.0.1", port });
  const read = await surplus.read(new Uint8Array(16)).catch(() => null);
  equal(read, null);
  surplus.close();
  equal((await metricValues(daemon, "qtls_handshake_failures_total")).max_connections, 1);

  // Quiet sessions end at the idle timeout (close_notify: the reader sees the end).
  for (const tls of sessions) {
    const reader = tls.readable.getReader();
    equal((await reader.read()).done, true);
    reader.releaseLock();
    await tls.close();
  }
  const idle = await daemon.waitForCount((e) => e.event === "idle_timeout", 3);
  equal(idle.length, 3);

  // With the slots free again, a client gets in.
  const late = await qsignClient(pki, port);
  equal(await exchange(late, "late"), "QSIGN 서버 응답 [세션 #4]: 메시지 수신 완료 (4 바이트)\n");
  await late.close();
});
