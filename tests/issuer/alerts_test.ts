/**
 * The Prometheus alerting rules: valid for promtool, and firing (and staying quiet) as intended
 * on synthetic series of the daemon's metric names (tests/issuer/support/alerts_rules_test.yml).
 */
import { equal, match } from "node:assert/strict";
import { ROOT } from "../support/env.ts";

async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command("promtool", {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const decoder = new TextDecoder();
  return { code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

Deno.test("promtool check rules accepts deploy/prometheus/alerts.yml", async () => {
  const { code, output } = await promtool("check", "rules", "deploy/prometheus/alerts.yml");
  equal(code, 0, output);
  match(output, /SUCCESS: 6 rules found/);
});

Deno.test("the alerts fire on expiring certificates and CRLs, failing handshakes and a lost HSM", async () => {
  const { code, output } = await promtool(
    "test",
    "rules",
    "tests/issuer/support/alerts_rules_test.yml",
  );
  equal(code, 0, output);
  match(output, /SUCCESS/);
});

Deno.test("the alert rules name the daemon's metrics", async () => {
  const rules = await Deno.readTextFile(`${ROOT}/deploy/prometheus/alerts.yml`);
  for (
    const metric of [
      "qtls_cert_expiry_seconds",
      "qtls_handshake_failures_total",
      "qtls_handshakes_total",
      "qtls_hsm_connected",
      "qtls_crl_next_update_seconds",
    ]
  ) {
    match(rules, new RegExp(`\\b${metric}\\b`));
  }
  for (
    const alert of [
      "CertificateExpiringSoon",
      "CrlExpiringSoon",
      "HighHandshakeFailureRate",
      "HSMConnectionLost",
    ]
  ) {
    match(rules, new RegExp(`alert: ${alert}\\b`));
  }
});
