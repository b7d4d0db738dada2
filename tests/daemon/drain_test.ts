/**
 * SIGTERM drains: the listener closes at once, open sessions go on until they end or until
 * --drain-timeout, when the daemon closes them with close_notify, and the exit status is 0.
 */
import { equal, rejects } from "node:assert/strict";
import { tempDir } from "../support/env.ts";
import { Daemon, exchange, makePki, qsignClient, serveArgs } from "./support.ts";

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
  const reader = lingering.readable.getReader();
  equal((await reader.read()).done, true);
  reader.releaseLock();
  await lingering.close();
  const drained = await daemon.waitFor((e) => e.event === "drain_timeout");
  equal(drained.closing, 1);
  equal((await daemon.stop()).code, 0);
  equal(daemon.events.at(-1)!.event, "stopped");
});
