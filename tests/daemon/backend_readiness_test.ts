/**
 * Proxy mode's /readyz follows the target: it fails after `backend_max_failures` connects in a
 * row have failed (client connections, or the periodic TCP check of `backend_check_interval`)
 * and recovers at the first one that succeeds, with a real backend that goes down and comes
 * back on the same port.
 */
import { equal, match, ok } from "node:assert/strict";
import { tempDir } from "../support/env.ts";
import { Daemon, exchange, httpGet, makePki, qsignClient, serveArgs } from "./support.ts";

/** A TCP echo backend on 127.0.0.1 (`port` 0: any), until `close()`. */
function echoBackend(port = 0) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const connections = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      connections.add(conn);
      void conn.readable.pipeTo(conn.writable).catch(() => {}).finally(() =>
        connections.delete(conn)
      );
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      for (const conn of connections) {
        try {
          conn.close();
        } catch {
          // Closed by its pipe already.
        }
      }
      await serving;
    },
  };
}

/** Polls /readyz until its status is `status` (bounded), and answers the last body. */
async function readyzBecomes(daemon: Daemon, status: number): Promise<string> {
  const url = `http://127.0.0.1:${daemon.metricsPort}/readyz`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const answer = await httpGet(url);
    if (answer.status === status) return answer.body;
    if (Date.now() > deadline) throw new Error(`/readyz stayed ${answer.status}: ${answer.body}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test("proxy readiness: failed client connects to the target make /readyz fail; one success restores it", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  let backend = echoBackend();
  const port = backend.port;
  await using daemon = await Daemon.start(
    serveArgs(pki, [
      "--mode",
      "proxy",
      "--target",
      `127.0.0.1:${port}`,
      "--backend-max-failures",
      "2",
    ]),
  );
  const url = `http://127.0.0.1:${daemon.metricsPort}/readyz`;
  const through = async () => {
    const tls = await qsignClient(pki, daemon.port());
    try {
      return await exchange(tls, "ping");
    } finally {
      await tls.close().catch(() => {});
    }
  };
  equal(await through(), "ping");
  equal((await httpGet(url)).status, 200);

  await backend.close();
  await through().catch(() => "");
  await daemon.waitForCount((e) => e.event === "backend_connect_failed", 1);
  equal((await httpGet(url)).status, 200, "one failure is below backend_max_failures");
  await through().catch(() => "");
  await daemon.waitFor((e) => e.event === "backend_down");
  const down = await httpGet(url);
  equal(down.status, 503);
  match(
    down.body,
    new RegExp(
      `backends: service default: target 127\\.0\\.0\\.1:${port}: 2 connects in a row failed`,
    ),
  );
  const status = JSON.parse((await httpGet(`http://127.0.0.1:${daemon.metricsPort}/status`)).body);
  equal(status.services[0].backend_ready, false);

  backend = echoBackend(port);
  try {
    equal(await through(), "ping");
    await daemon.waitFor((e) => e.event === "backend_up");
    equal((await httpGet(url)).status, 200);
  } finally {
    await backend.close();
  }
});

Deno.test("proxy readiness: the periodic TCP check notices the target go and come back without clients", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  let backend = echoBackend();
  const port = backend.port;
  await using daemon = await Daemon.start(
    serveArgs(pki, [
      "--mode",
      "proxy",
      "--target",
      `127.0.0.1:${port}`,
      "--backend-max-failures",
      "3",
      "--backend-check-interval",
      "100ms",
    ]),
  );
  equal(await readyzBecomes(daemon, 200), "ready\n");
  await backend.close();
  const down = await daemon.waitFor((e) => e.event === "backend_down");
  equal(down.failures, 3, "not ready at the third failed check, not before");
  // The checks go on every 100 ms: the streak /readyz reports may have grown since.
  const body = await readyzBecomes(daemon, 503);
  const streak = body.match(/(\d+) connects in a row failed \(last: .*\)/);
  ok(streak && Number(streak[1]) >= 3, body);
  equal(daemon.events.filter((e) => e.event === "accepted").length, 0, "no client was needed");
  backend = echoBackend(port);
  try {
    equal(await readyzBecomes(daemon, 200), "ready\n");
  } finally {
    await backend.close();
  }
});

Deno.test("backend_max_failures = 0: readiness ignores a target that is down", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const gone = echoBackend();
  await gone.close();
  await using daemon = await Daemon.start(
    serveArgs(pki, [
      "--mode",
      "proxy",
      "--target",
      `127.0.0.1:${gone.port}`,
      "--backend-max-failures",
      "0",
      "--backend-check-interval",
      "100ms",
    ]),
    { env: { QTLS_LOG_LEVEL: "DEBUG" } },
  );
  await daemon.waitForCount((e) => e.event === "backend_check_failed", 3);
  equal((await httpGet(`http://127.0.0.1:${daemon.metricsPort}/readyz`)).status, 200);
});
