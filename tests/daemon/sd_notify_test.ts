/**
 * systemd notifications: the daemon sends READY=1 once listening, RELOADING=1 (with
 * MONOTONIC_USEC) and READY=1 around a SIGHUP reload, WATCHDOG=1 when WATCHDOG_USEC is set, and
 * STOPPING=1 on SIGTERM, to the unix datagram socket named by NOTIFY_SOCKET (here one the test
 * owns).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { SystemdNotifier } from "../../src/observe/sd_notify.ts";
import { tempDir } from "../support/env.ts";
import { Daemon, makePki, NotifySocket, serveArgs } from "./support.ts";

Deno.test("the daemon notifies systemd: READY, WATCHDOG, RELOADING/READY on SIGHUP, STOPPING", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const socket = new NotifySocket(`${dir.path}/notify.sock`);
  try {
    await using daemon = await Daemon.start(serveArgs(pki), {
      env: { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: "200000" },
    });
    const ready = await socket.next((m) => m.startsWith("READY=1"));
    ok(socket.messages[ready].includes("\nSTATUS=serving 1 service(s)"));
    await socket.next((m) => m === "WATCHDOG=1", ready);

    daemon.signal("SIGHUP");
    const reloading = await socket.next((m) => m.startsWith("RELOADING=1"), ready);
    const monotonic = /\nMONOTONIC_USEC=(\d+)$/.exec(socket.messages[reloading]);
    ok(monotonic, socket.messages[reloading]);
    // CLOCK_MONOTONIC counts from boot like the system uptime (which adds only suspended time).
    const uptimeSeconds = Deno.osUptime();
    ok(
      Math.abs(Number(monotonic[1]) / 1e6 - uptimeSeconds) < 600,
      `${monotonic[1]} vs ${uptimeSeconds}`,
    );
    await socket.next((m) => m.startsWith("READY=1"), reloading);
    await daemon.waitFor((e) => e.event === "reload_ok" && e.trigger === "SIGHUP");

    const status = await daemon.stop("SIGTERM");
    equal(status.code, 0);
    const stopping = await socket.next((m) => m === "STOPPING=1", reloading);
    // No watchdog pings once stopping.
    deepEqual(socket.messages.slice(stopping + 1).filter((m) => m === "WATCHDOG=1"), []);
  } finally {
    await socket.close();
  }
});

Deno.test("NOTIFY_SOCKET in the abstract namespace (@name) is reached too", async () => {
  const name = `qsign-test-${crypto.randomUUID()}`;
  const socket = new NotifySocket(`\0${name}`);
  try {
    using notifier = SystemdNotifier.fromEnv({ NOTIFY_SOCKET: `@${name}` });
    ok(notifier.enabled);
    await notifier.notify("STATUS=hello");
    await socket.next((m) => m === "STATUS=hello");
  } finally {
    await socket.close();
  }
  using silent = SystemdNotifier.fromEnv({});
  equal(silent.enabled, false);
  await silent.ready(); // without systemd, nothing happens and nothing fails
});
