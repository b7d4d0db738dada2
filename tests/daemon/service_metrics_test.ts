/**
 * Metrics of a daemon with three services: every per-connection series carries `service`, each
 * service's certificates have their own expiry series, every series whose labels are known
 * exists from the first scrape at 0, and one reload (a renewal's file writes plus its SIGHUP)
 * counts once in `qtls_reloads_total`, whatever number of services it reloads.
 */
import { equal, rejects } from "node:assert/strict";
import { writeFileAtomic } from "../../src/fsutil.ts";
import { tempDir } from "../support/env.ts";
import {
  Daemon,
  exchange,
  issue,
  makePki,
  qsignClient,
  sampleValue,
  scrapeMetrics,
} from "./support.ts";

const SERVICES = ["alpha", "beta", "gamma"];

Deno.test("three services: per-service series from 0, per-service expiry, one reload counted once", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  // alpha and beta serve the same files (as a renewal would update them); gamma its own.
  const shared = await issue(pki, "server", "shared.qsign.local", "shared", {
    sans: ["DNS:localhost", "IP:127.0.0.1"],
  });
  const config = `${dir.path}/qsign.toml`;
  const service = (name: string, cert: string, key: string) =>
    `[[service]]\nname = "${name}"\nlisten = "127.0.0.1:0"\ncert = "${cert}"\nkey = "${key}"\n` +
    `ca = "${pki.root}"\n`;
  await Deno.writeTextFile(
    config,
    `metrics_listen = "127.0.0.1:0"\n` + service("alpha", shared.cert, shared.key) +
      service("beta", shared.cert, shared.key) + service("gamma", pki.serverCert, pki.serverKey),
  );
  await using daemon = await Daemon.start(["--config", config], {
    env: { QTLS_LOG_LEVEL: "DEBUG" },
  });

  const start = await scrapeMetrics(daemon);
  for (const name of SERVICES) {
    const service = { service: name };
    for (
      const metric of [
        "qtls_connections_active",
        "qtls_sessions_total",
        "qtls_bytes_received_total",
        "qtls_bytes_sent_total",
        "qtls_backend_errors_total",
        "qtls_handshake_duration_seconds_count",
      ]
    ) {
      equal(sampleValue(start, metric, service), 0, `${metric}{service="${name}"}`);
    }
    equal(sampleValue(start, "qtls_handshakes_total", { ...service, result: "failed" }), 0);
    for (const reason of ["max_connections", "rate_limited", "handshake_timeout"]) {
      equal(sampleValue(start, "qtls_handshake_failures_total", { ...service, reason }), 0);
    }
    equal(sampleValue(start, "qtls_client_offers_total", { ...service, pq: "false" }), 0);
  }
  equal(sampleValue(start, "qtls_reloads_total", { result: "ok" }), 0);
  equal(sampleValue(start, "qtls_reloads_total", { result: "failed" }), 0);
  const expirySeries = (samples: typeof start) =>
    samples.filter((s) => s.name === "qtls_cert_expiry_seconds")
      .map((s) => `${s.labels.service} ${s.labels.cert} ${s.value}`).sort();
  const seconds = (date: Date) => Math.floor(date.getTime() / 1000);
  const gammaExpiry = sampleValue(start, "qtls_cert_expiry_seconds", { service: "gamma" });
  equal(
    expirySeries(start).join("\n"),
    [
      `alpha ${shared.cert} ${seconds(shared.notAfter)}`,
      `beta ${shared.cert} ${seconds(shared.notAfter)}`,
      `gamma ${pki.serverCert} ${gammaExpiry}`,
    ].join("\n"),
  );

  // Traffic: one session on alpha, two on beta, a refused client on gamma.
  for (const [name, sessions] of [["alpha", 1], ["beta", 2]] as const) {
    for (let i = 0; i < sessions; i++) {
      const tls = await qsignClient(pki, daemon.port(name));
      await exchange(tls, "12345");
      await tls.close();
    }
  }
  await rejects(async () => {
    const tls = await qsignClient(pki, daemon.port("gamma"), { withCertificate: false });
    await exchange(tls, "x");
  });
  await daemon.waitForCount((e) => e.event === "closed", 3);
  await daemon.waitFor((e) => e.event === "handshake_failed" && e.service === "gamma");

  const after = await scrapeMetrics(daemon);
  const ok1 = { role: "server", result: "ok" };
  equal(sampleValue(after, "qtls_handshakes_total", { service: "alpha", ...ok1 }), 1);
  equal(sampleValue(after, "qtls_handshakes_total", { service: "beta", ...ok1 }), 2);
  equal(sampleValue(after, "qtls_handshakes_total", { service: "gamma", ...ok1 }), undefined);
  equal(sampleValue(after, "qtls_handshakes_total", { service: "gamma", result: "failed" }), 1);
  equal(sampleValue(after, "qtls_handshakes_total", { service: "beta", result: "failed" }), 0);
  equal(sampleValue(after, "qtls_sessions_total", { service: "alpha" }), 1);
  equal(sampleValue(after, "qtls_sessions_total", { service: "beta" }), 2);
  equal(sampleValue(after, "qtls_sessions_total", { service: "gamma" }), 0);
  equal(sampleValue(after, "qtls_bytes_received_total", { service: "alpha" }), 5);
  equal(sampleValue(after, "qtls_bytes_received_total", { service: "beta" }), 10);
  equal(sampleValue(after, "qtls_handshake_duration_seconds_count", { service: "beta" }), 2);
  equal(sampleValue(after, "qtls_client_offers_total", { service: "gamma", pq: "true" }), 1);
  const gammaFailures = after
    .filter((s) => s.name === "qtls_handshake_failures_total" && s.labels.service === "gamma")
    .reduce((sum, s) => sum + s.value, 0);
  equal(gammaFailures, 1);

  // A renewal of the shared files, as `qsign renew` does it: atomic writes, then SIGHUP.
  const renewed = await issue(pki, "server", "renewed.qsign.local", "renewed", {
    sans: ["DNS:localhost", "IP:127.0.0.1"],
    ttlSeconds: 7200,
  });
  await writeFileAtomic(shared.key, await Deno.readFile(renewed.key), { mode: 0o600 });
  await writeFileAtomic(shared.cert, await Deno.readFile(renewed.cert));
  daemon.signal("SIGHUP");
  const reloads = await daemon.waitForCount(
    (e) => e.event === "reload_ok" && e.trigger === "SIGHUP",
    3,
  );
  equal(reloads.length, 3, "SIGHUP reloads every service");
  // The file watch sees the same writes afterwards and finds them already loaded.
  await daemon.waitFor((e) => e.event === "reload_unchanged");
  const reloaded = await scrapeMetrics(daemon);
  equal(sampleValue(reloaded, "qtls_reloads_total", { result: "ok" }), 1);
  equal(sampleValue(reloaded, "qtls_reloads_total", { result: "failed" }), 0);
  equal(daemon.events.filter((e) => e.event === "reload_ok").length, 3);
  equal(
    expirySeries(reloaded).join("\n"),
    [
      `alpha ${shared.cert} ${seconds(renewed.notAfter)}`,
      `beta ${shared.cert} ${seconds(renewed.notAfter)}`,
      `gamma ${pki.serverCert} ${gammaExpiry}`,
    ].join("\n"),
  );
});
