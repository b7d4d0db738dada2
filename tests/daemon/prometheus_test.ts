/**
 * A real Prometheus (Debian's `prometheus`, on loopback, storage in a temp dir) scrapes the
 * daemon while handshakes happen; the test reads qtls_handshakes_total back through
 * Prometheus' HTTP API.
 */
import { equal, ok } from "node:assert/strict";
import { ROOT, tempDir } from "../support/env.ts";
import { startPrometheus } from "../support/services.ts";
import { Daemon, exchange, makePki, qsignClient, serveArgs } from "./support.ts";

/** Polls `check` every 250 ms until it returns a value, for at most `timeoutMs`. */
async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
}

Deno.test("Prometheus scrapes /metrics and reports the handshakes made", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki));

  await using prometheus = await startPrometheus(dir.path, [`127.0.0.1:${daemon.metricsPort}`]);
  const api = prometheus.api;

  const handshakes = 4;
  for (let i = 0; i < handshakes; i++) {
    const tls = await qsignClient(pki, daemon.port());
    await exchange(tls, "scrape me");
    await tls.close();
  }

  const query = encodeURIComponent('sum(qtls_handshakes_total{role="server",result="ok"})');
  const value = await eventually(
    async () => {
      const body = await (await fetch(`${api}/api/v1/query?query=${query}`)).json();
      const sample = body.data?.result?.[0]?.value?.[1];
      return sample === String(handshakes) ? sample : undefined;
    },
    60_000,
    `qtls_handshakes_total = ${handshakes} in Prometheus`,
  );
  equal(value, String(handshakes));

  const targets = await (await fetch(`${api}/api/v1/targets`)).json();
  const target = targets.data.activeTargets[0];
  equal(target.health, "up", target.lastError);
  const groups = await (await fetch(
    `${api}/api/v1/query?query=${encodeURIComponent("qtls_handshakes_total")}`,
  )).json();
  ok(
    groups.data.result.some((r: { metric: Record<string, string> }) =>
      r.metric.group === "SecP384r1MLKEM1024" && r.metric.sigalg === "mldsa65"
    ),
  );
});

Deno.test("the sample Prometheus configuration (with the alerting rules) passes promtool", async () => {
  const out = await new Deno.Command("promtool", {
    args: ["check", "config", `${ROOT}/deploy/prometheus/prometheus.yml`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  equal(out.code, 0, text);
  ok(text.includes("SUCCESS: 1 rule files found"), text);
});
