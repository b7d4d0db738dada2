/**
 * The shipped Grafana dashboard against real data: a real Prometheus scrapes a running daemon
 * whose server key is in a SoftHSM2 token and which checks a CRL, after successful handshakes and
 * refused ones; every PromQL expression of every panel, evaluated through Prometheus' query API,
 * returns at least one series. The JSON is deploy/grafana/dashboard.ts, whose type is
 * @grafana/schema's `Dashboard`.
 */
import { equal, ok } from "node:assert/strict";
import { createTestToken } from "../hsm/softhsm.ts";
import { DENO, ROOT, runQsign, tempDir } from "../support/env.ts";
import { startPrometheus } from "../support/services.ts";
import { clientArgs, Daemon, makePki } from "../daemon/support.ts";

const DASHBOARD = `${ROOT}/deploy/grafana/qsign-dashboard.json`;

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string }[];
}

/** Every panel's expressions, with Grafana's variables as the test's Prometheus can take them. */
async function dashboardQueries(): Promise<{ panel: string; expr: string }[]> {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD));
  const panels: Panel[] = dashboard.panels.flatMap((p: Panel & { panels?: Panel[] }) => [
    p,
    ...(p.panels ?? []),
  ]);
  return panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      panel: p.title,
      expr: t.expr
        .replaceAll("$__rate_interval", "30s")
        .replaceAll('service=~"$service"', 'service=~".*"')
        .replaceAll('service="$service"', 'service="default"'),
    }))
  );
}

async function eventually<T>(check: () => Promise<T | undefined>, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("every panel of the Grafana dashboard returns data from a scraped HSM daemon", async () => {
  await using dir = await tempDir("qsign-dashboard-");
  await using token = await createTestToken("qsign-dashboard");
  const pki = await makePki(`${dir.path}/pki`);
  const qsign = async (...args: string[]) => {
    const result = await runQsign(args, { env: token.env });
    equal(result.code, 0, `qsign ${args.join(" ")}\n${result.stderr}`);
  };
  // The server key in the token, certified by the embedded CA from a CSR signed in the token.
  await qsign("hsm", "keygen", ...token.loginArgs, "--type", "ec-p384", "--label", "qtls-server");
  await qsign(
    "hsm",
    "csr",
    ...token.loginArgs,
    ...["--key-label", "qtls-server", "--subject", "/O=QSIGN/CN=localhost", "--san", "localhost"],
    ...["--out", `${dir.path}/server.csr`],
  );
  await qsign(
    "pki",
    "issue",
    ...["--dir", pki.dir, "--profile", "server", "--cn", "localhost"],
    ...["--csr", `${dir.path}/server.csr`, "--out", `${dir.path}/server`],
  );
  await qsign("pki", "crl", "--dir", pki.dir, "--ca", "client", "--out", `${dir.path}/client.crl`);

  await using daemon = await Daemon.start([
    ...["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
    ...["--cert", `${dir.path}/server.crt`, "--ca", pki.root, "--crl", `${dir.path}/client.crl`],
    ...["--hsm", ...token.loginArgs, "--hsm-key-label", "qtls-server"],
  ], { env: token.env });

  await using prometheus = await startPrometheus(dir.path, [`127.0.0.1:${daemon.metricsPort}`]);

  // Traffic: mutual-TLS sessions, then refusals (no client certificate, a wrong trust anchor).
  for (let i = 0; i < 3; i++) {
    const ok = await runQsign([
      "connect",
      `127.0.0.1:${daemon.port()}`,
      ...clientArgs(pki),
      ...["--send", "x".repeat(1000)],
    ]);
    equal(ok.code, 0, ok.stderr);
  }
  const other = await makePki(`${dir.path}/other`);
  const refused = await runQsign([
    "connect",
    `127.0.0.1:${daemon.port()}`,
    ...clientArgs(pki, { cert: other.clientCert, key: other.clientKey }),
    ...["--send", "refused"],
  ]);
  ok(refused.code !== 0, "a client from another PKI is refused");

  for (const { panel, expr } of await dashboardQueries()) {
    const series = await eventually(
      async () => {
        const result = await prometheus.query(expr);
        return result.length ? result : undefined;
      },
      30_000,
      `a series for panel "${panel}": ${expr}`,
    );
    ok(series.length > 0);
  }
});

Deno.test("the shipped JSON is the dashboard typed against @grafana/schema's Dashboard", async () => {
  const source = `${ROOT}/deploy/grafana/dashboard.ts`;
  const check = await new Deno.Command(DENO, {
    args: ["check", source],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  ok(check.success, new TextDecoder().decode(check.stderr));
  const { dashboard } = await import(source);
  equal(await Deno.readTextFile(DASHBOARD), JSON.stringify(dashboard, null, 2) + "\n");
});
