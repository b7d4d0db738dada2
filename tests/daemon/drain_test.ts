/**
 * SIGTERM drains: the listener closes at once, open sessions go on until they end or until
 * --drain-timeout, when the daemon closes them with close_notify, and the exit status is 0.
 * A second SIGTERM ends the drain early, still with close_notify and exit status 0; signals
 * that arrive while the daemon is on its way out do not change that.
 */
import { equal, rejects } from "node:assert/strict";
import { tempDir } from "../support/env.ts";
import type { TlsConnection } from "../../src/tls/conn.ts";
import { Daemon, exchange, makePki, qsignClient, serveArgs } from "./support.ts";

/** Reads `tls` to its end: true when the daemon ended it with close_notify. */
async function endsCleanly(tls: TlsConnection): Promise<boolean> {
  const reader = tls.readable.getReader();
  try {
    return (await reader.read()).done === true;
  } finally {
    reader.releaseLock();
    await tls.close();
  }
}

Deno.test("SIGTERM stops accepting, lets sessions finish, closes the rest at the drain timeout", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--drain-timeout", "2s"]));
  const port = daemon.port();
  const finishing = await qsignClient(pki, port);
  const lingering = await qsignClient(pki, port);
  equal(
    await exchange(finishing, "one"),
    "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (3 바이트)\n",
  );

  daemon.signal("SIGTERM");
  const stopping = await daemon.waitFor((e) => e.event === "stopping");
  equal(stopping.open_connections, 2);
  // No new connections once stopping.
  await rejects(Deno.connect({ hostname: "127.0.0.1", port }), Deno.errors.ConnectionRefused);
  // An open session still works during the drain, and ends when its client is done.
  equal(
    await exchange(finishing, "two"),
    "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (3 바이트)\n",
  );
  await finishing.close();

  // The lingering one is closed cleanly (close_notify) at the drain timeout.
  equal(await endsCleanly(lingering), true);
  const drained = await daemon.waitFor((e) => e.event === "drain_timeout");
  equal(drained.closing, 1);
  equal((await daemon.exited()).code, 0);
  equal(daemon.events.at(-1)!.event, "stopped");
});

Deno.test("a second SIGTERM cuts the drain short: close_notify and exit status 0", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  // A drain timeout far beyond exited()'s bound: only the second signal can end it in time.
  await using daemon = await Daemon.start(serveArgs(pki, ["--drain-timeout", "10m"]));
  const lingering = await qsignClient(pki, daemon.port());
  equal(
    await exchange(lingering, "hello"),
    "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (5 바이트)\n",
  );

  daemon.signal("SIGTERM");
  await daemon.waitFor((e) => e.event === "stopping");
  daemon.signal("SIGTERM");
  const interrupted = await daemon.waitFor((e) => e.event === "drain_interrupted");
  equal(interrupted.signal, "SIGTERM");
  equal(interrupted.closing, 1);
  equal(await endsCleanly(lingering), true);
  await daemon.waitFor((e) => e.event === "stopped");
  // On its way out (tokens, HTTP server, pid file), the daemon still handles signals.
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    try {
      daemon.signal(signal);
    } catch {
      // It has exited already.
    }
  }
  equal((await daemon.exited(15_000)).code, 0);
});
