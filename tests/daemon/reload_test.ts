/**
 * Reload under traffic: renewed certificate files are picked up by the file watch (and SIGHUP)
 * without touching open connections; a broken new certificate leaves the old one serving.
 */
import { equal, match, ok } from "node:assert/strict";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { writeFileAtomic } from "../../src/fsutil.ts";
import { tempDir } from "../support/env.ts";
import {
  Daemon,
  exchange,
  issue,
  liveServerFiles,
  makePki,
  qsignClient,
  serveArgs,
} from "./support.ts";

async function reloadCounts(daemon: Daemon): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
  const family = (parsePrometheusTextFormat(text) as {
    name: string;
    metrics: { labels: Record<string, string>; value: string }[];
  }[]).find((f) => f.name === "qtls_reloads_total");
  return Object.fromEntries(family?.metrics.map((m) => [m.labels.result, Number(m.value)]) ?? []);
}

Deno.test("a certificate swap reaches new handshakes only; a broken one leaves the old serving", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const live = await liveServerFiles(dir.path, pki);
  await using daemon = await Daemon.start(serveArgs(pki, [], live));
  const port = daemon.port();

  const before = await qsignClient(pki, port);
  match(before.info.peerLeaf!.subject, /CN=qtls-server\.qsign\.local/);
  equal(
    await exchange(before, "before"),
    "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (6 바이트)\n",
  );

  // Renewal writes the new chain and key atomically, as `qsign --renewal` does.
  const renewed = await issue(pki, "server", "renewed.qsign.local", "renewed", {
    sans: ["DNS:localhost", "IP:127.0.0.1"],
  });
  await writeFileAtomic(live.key, await Deno.readFile(renewed.key), { mode: 0o600 });
  await writeFileAtomic(live.cert, await Deno.readFile(renewed.cert));
  const reloaded = await daemon.waitFor((e) => e.event === "reload_ok");
  match(String(reloaded.trigger), /^file change: .*live\/server\.(crt|key)/);

  const after = await qsignClient(pki, port);
  match(after.info.peerLeaf!.subject, /CN=renewed\.qsign\.local/);
  equal(await exchange(after, "after"), "QSIGN 서버 응답 [세션 #2]: 메시지 수신 완료 (5 바이트)\n");
  // The connection opened before the swap goes on, on its own session.
  equal(
    await exchange(before, "still here"),
    "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (10 바이트)\n",
  );
  await after.close();

  const expiry = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
  ok(
    expiry.includes(
      `qtls_cert_expiry_seconds{service="default",cert="${live.cert}"} ${
        Math.floor(renewed.notAfter.getTime() / 1000)
      }`,
    ),
    expiry,
  );

  // A truncated certificate: the reload fails, is logged and counted, and the renewed one stays.
  const text = await Deno.readTextFile(renewed.cert);
  await writeFileAtomic(live.cert, new TextEncoder().encode(text.slice(0, text.length / 2)));
  const failed = await daemon.waitFor((e) => e.event === "reload_failed");
  match(String(failed.error), /server\.crt/);
  const kept = await qsignClient(pki, port);
  match(kept.info.peerLeaf!.subject, /CN=renewed\.qsign\.local/);
  equal(await exchange(kept, "kept"), "QSIGN 서버 응답 [세션 #3]: 메시지 수신 완료 (4 바이트)\n");
  await kept.close();

  // A key that does not match the certificate is refused the same way, here on SIGHUP.
  await writeFileAtomic(live.cert, await Deno.readFile(renewed.cert));
  await daemon.waitFor((e) => e.event === "reload_ok" && e !== reloaded);
  await writeFileAtomic(live.key, await Deno.readFile(pki.clientKey), { mode: 0o600 });
  await daemon.waitFor((e) => e.event === "reload_failed" && e !== failed);
  daemon.signal("SIGHUP");
  const onHangup = await daemon.waitFor((e) =>
    e.event === "reload_failed" && e.trigger === "SIGHUP"
  );
  match(String(onHangup.error), /does not belong to the certificate/);
  const counts = await reloadCounts(daemon);
  equal(counts.ok, 2);
  equal(counts.failed, 3);

  equal(await exchange(before, "bye"), "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (3 바이트)\n");
  await before.close();
  const ready = await fetch(`http://127.0.0.1:${daemon.metricsPort}/readyz`);
  equal(ready.status, 200);
  await ready.body?.cancel();
});
