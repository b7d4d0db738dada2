/**
 * Probes are not failures: a TCP connection that closes without a byte (a load balancer's check)
 * counts as qtls_probe_connections_total and logs at DEBUG; a client that hangs up mid-handshake
 * without an alert (before its ClientHello is whole, or after the server's flight, as Chromium
 * does when it must first ask for a certificate) counts as qtls_handshakes_aborted_total{phase}.
 * Neither reaches qtls_handshake_failures_total, which the alert rules read.
 */
import { equal } from "node:assert/strict";
import { PEER_NODE, tempDir } from "../support/env.ts";
import {
  type AuditEvent,
  Daemon,
  makePki,
  type Pki,
  sampleValue,
  scrapeMetrics,
  serveArgs,
} from "./support.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function failures(daemon: Daemon): Promise<number> {
  const samples = await scrapeMetrics(daemon);
  return samples.filter((s) => s.name === "qtls_handshake_failures_total")
    .reduce((sum, s) => sum + s.value, 0);
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * A Node 26 (OpenSSL 3.5) client through a relay that closes both sides once the server's first
 * flight has passed: the client never answers it and sends no alert.
 */
async function abandonAfterServerFlight(port: number, pki: Pki): Promise<void> {
  using relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = new Deno.Command(PEER_NODE, {
    args: [
      "-e",
      `const tls = require("tls"); const fs = require("fs");
       const s = tls.connect({ host: "127.0.0.1", port: ${relay.addr.port}, servername: "localhost",
         ca: fs.readFileSync(${JSON.stringify(pki.root)}), ecdhCurve: "SecP384r1MLKEM1024" });
       s.on("error", () => {}); s.on("close", () => process.exit(0));`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const inbound = await relay.accept();
  const outbound = await Deno.connect({ hostname: "127.0.0.1", port });
  const buffer = new Uint8Array(65536);
  const hello = await inbound.read(buffer);
  await outbound.write(buffer.subarray(0, hello!));
  await outbound.read(buffer); // the ServerHello and the server's encrypted flight begin
  inbound.close();
  outbound.close();
  await client.status;
}

Deno.test("health checks and abandoned handshakes are counted apart from failures", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--log-level", "DEBUG"]));
  const port = daemon.port();
  const metric = async (name: string, labels: Record<string, string> = {}) =>
    sampleValue(await scrapeMetrics(daemon), name, { service: "default", ...labels }) ?? -1;

  for (let i = 0; i < 3; i++) (await Deno.connect({ hostname: "127.0.0.1", port })).close();
  await until(async () => (await metric("qtls_probe_connections_total")) === 3, "3 probes");
  // The log line comes through another pipe than the scrape: it may arrive just after it.
  const probe = (e: AuditEvent) => e.event === "probe" && e.level === "DEBUG";
  await daemon.waitForCount(probe, 3);
  equal(daemon.events.filter(probe).length, 3);

  const partial = await Deno.connect({ hostname: "127.0.0.1", port });
  // A handshake record announcing 512 bytes, of which 4 arrive.
  await partial.write(Uint8Array.of(0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc));
  await sleep(100);
  partial.close();
  await until(
    async () => (await metric("qtls_handshakes_aborted_total", { phase: "client_hello" })) === 1,
    "an abort before the ClientHello",
  );

  await abandonAfterServerFlight(port, pki);
  await until(
    async () => (await metric("qtls_handshakes_aborted_total", { phase: "handshake" })) === 1,
    "an abort after the server's flight",
  );

  equal(await failures(daemon), 0, "none of these is a handshake failure");
  equal(daemon.events.filter((e) => e.event === "handshake_failed").length, 0);
  equal(daemon.events.filter((e) => e.level === "WARN").length, 0);
});
