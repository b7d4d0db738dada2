/**
 * The operator's endpoints of a running daemon: /metrics counts real handshakes (parsed with
 * parse-prometheus-text-format, checked by `promtool check metrics`), /healthz, /readyz (503
 * with the reason once the certificate has expired), /status, and the JSON audit log.
 */
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import { readCertificatesFile } from "../../src/pki/pem.ts";
import { tempDir } from "../support/env.ts";
import {
  Daemon,
  exchange,
  httpGet,
  issue,
  makePki,
  parseSamples,
  processStatus,
  qsignClient,
  sampleValue as sample,
  serveArgs,
} from "./support.ts";

async function promtoolCheck(exposition: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(exposition));
  await writer.close();
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

Deno.test("/metrics counts real handshakes, failures and bytes, and passes promtool", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki));
  const port = daemon.port();

  const handshakes = 3;
  for (let i = 1; i <= handshakes; i++) {
    const tls = await qsignClient(pki, port);
    equal(
      await exchange(tls, `message ${i}`),
      `QSIGN 서버 응답 [세션 #${i}]: 메시지 수신 완료 (9 바이트)\n`,
    );
    await tls.close();
  }
  // A client without a certificate is refused (certificate_required).
  await rejects(async () => {
    const tls = await qsignClient(pki, port, { withCertificate: false });
    await exchange(tls, "x");
  });
  await daemon.waitFor((e) => e.event === "handshake_failed");
  await daemon.waitFor((e) => e.event === "closed" && e.session === handshakes);

  const response = await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`);
  equal(response.status, 200);
  match(response.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const exposition = await response.text();
  // An independent parser must read the whole exposition; the assertions read its samples.
  const families = parsePrometheusTextFormat(exposition) as { name: string }[];
  ok(families.some((f) => f.name === "qtls_handshakes_total"));
  const samples = parseSamples(exposition);

  equal(
    sample(samples, "qtls_handshakes_total", {
      role: "server",
      result: "ok",
      group: "SecP384r1MLKEM1024",
      sigalg: "mldsa65",
      resumed: "false",
    }),
    handshakes,
  );
  equal(sample(samples, "qtls_handshakes_total", { result: "failed" }), 1);
  const failure = daemon.events.find((e) => e.event === "handshake_failed")!;
  equal(sample(samples, "qtls_handshake_failures_total", { reason: String(failure.alert) }), 1);
  equal(sample(samples, "qtls_handshake_duration_seconds_count"), handshakes);
  equal(sample(samples, "qtls_sessions_total"), handshakes);
  equal(sample(samples, "qtls_connections_active"), 0);
  equal(sample(samples, "qtls_bytes_received_total"), 9 * handshakes);
  ok(sample(samples, "qtls_bytes_sent_total")! > 60 * handshakes);
  equal(sample(samples, "qtls_client_offers_total", { pq: "true" }), handshakes + 1);
  // Nothing reloaded yet: both results are there, at 0.
  equal(sample(samples, "qtls_reloads_total", { result: "ok" }), 0);
  equal(sample(samples, "qtls_reloads_total", { result: "failed" }), 0);
  equal(sample(samples, "qtls_backend_errors_total"), 0);
  // No HSM configured: the HSM gauge is absent rather than a misleading 0.
  equal(families.find((f) => f.name === "qtls_hsm_connected"), undefined);
  equal(sample(samples, "qtls_hsm_connected"), undefined);
  const leaf = new X509Certificate(
    (await readCertificatesFile(pki.serverCert))[0] as Uint8Array<ArrayBuffer>,
  );
  equal(
    sample(samples, "qtls_cert_expiry_seconds", { service: "default", cert: pki.serverCert }),
    Math.floor(leaf.notAfter.getTime() / 1000),
  );
  ok(sample(samples, "process_resident_memory_bytes")! > 0);
  ok(sample(samples, "process_cpu_seconds_total")! > 0);

  const check = await promtoolCheck(exposition);
  equal(check.code, 0, check.output);
  equal(check.output.trim(), "", check.output);

  // The audit log: one JSON object per event, with the facts an auditor needs and no secrets.
  const ok1 = daemon.events.find((e) => e.event === "handshake_ok")!;
  equal(ok1.group, "SecP384r1MLKEM1024");
  equal(ok1.cipher, "TLS_AES_256_GCM_SHA384");
  equal(ok1.scheme, "mldsa65");
  equal(ok1.resumed, false);
  match(String(ok1.client_subject), /CN=qtls-client\.qsign\.local/);
  match(String(ok1.client_fingerprint), /^[0-9a-f]{64}$/);
  ok(ok1.client_serial);
  const closed = daemon.events.find((e) => e.event === "closed")!;
  deepEqual([closed.bytes_received, typeof closed.duration_ms], [9, "number"]);
  const key = await Deno.readTextFile(pki.serverKey);
  const keyBody = key.split("\n").slice(1, -2).join("");
  ok(!JSON.stringify(daemon.events).includes(keyBody.slice(0, 40)));
});

Deno.test("/healthz, /readyz and /status of a healthy daemon", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki));
  const base = `http://127.0.0.1:${daemon.metricsPort}`;

  deepEqual(await httpGet(`${base}/healthz`), { status: 200, body: "ok\n" });
  deepEqual(await httpGet(`${base}/readyz`), { status: 200, body: "ready\n" });
  const status = JSON.parse((await httpGet(`${base}/status`)).body);
  equal(status.version, "0.1.0");
  equal(status.services[0].name, "default");
  equal(status.services[0].mode, "echo");
  equal(status.services[0].listening, true);
  equal(status.services[0].client_auth, "require");
  equal(status.services[0].groups[0], "SecP384r1MLKEM1024");
  ok(status.services[0].accepted_schemes.includes("mldsa65"));
  match(status.services[0].certificates[0].subject, /CN=qtls-server\.qsign\.local/);
  ok(Date.parse(status.services[0].certificates[0].notAfter) > Date.now());
  equal(status.counters.sessions, 0);
  equal((await httpGet(`${base}/nothing`)).status, 404);
});

Deno.test("/readyz answers 503 with the reason when the served certificate has expired", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const brief = await issue(pki, "server", "brief.qsign.local", "brief", { ttlSeconds: 8 });
  await using daemon = await Daemon.start(serveArgs(pki, [], brief));
  const base = `http://127.0.0.1:${daemon.metricsPort}`;
  // Wait (bounded) past notAfter, then ask.
  await new Promise((resolve) =>
    setTimeout(resolve, Math.max(0, brief.notAfter.getTime() - Date.now()) + 1500)
  );
  const ready = await httpGet(`${base}/readyz`);
  equal(ready.status, 503);
  match(ready.body, /^not ready\ncertificates: CN=brief\.qsign\.local.* is outside /);
});

/** Voluntary context switches of a process's main thread: how often it has gone to sleep. */
async function mainThreadWakeups(pid: number): Promise<number> {
  const status = await processStatus(pid);
  const switches = status && /^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1];
  if (!switches) throw new Error(`process ${pid} is gone`);
  return Number(switches);
}

Deno.test("an idle daemon sleeps: neither the supervisor nor a worker wakes on a timer", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--workers", "2"]));
  const status = JSON.parse((await httpGet(`http://127.0.0.1:${daemon.metricsPort}/status`)).body);
  const pids: number[] = [status.pid, ...status.workers.map((w: { pid: number }) => w.pid)];
  equal(pids.length, 3);
  // The /status request woke them all; let that settle before counting.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const before = await Promise.all(pids.map(mainThreadWakeups));
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  const after = await Promise.all(pids.map(mainThreadWakeups));
  // A 10 ms timer (prom-client's event-loop monitor did that) would be about 300 here.
  for (const [i, pid] of pids.entries()) {
    ok(after[i] - before[i] < 30, `process ${pid} woke ${after[i] - before[i]} times in 3 s`);
  }
});
