/**
 * The startup banner of `qsign serve` (on stderr; stdout is the JSON audit log) and the
 * `/status` document: what each service listens on, how it authenticates, what it offers.
 */
import type { Address, DaemonConfig } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { describeCryptoProvider, formatCryptoProvider } from "../crypto/index.ts";
import { metrics } from "../observe/metrics.ts";
import { DEFAULT_GROUPS } from "../tls/groups.ts";
import { offeredSchemes, schemeName } from "../tls/sigschemes.ts";
import { VERSION } from "../version.ts";
import type { QtlsService } from "./service.ts";

/** The groups a service offers, in preference order. */
function groupsOf(service: QtlsService): string[] {
  const configured = service.config.groups;
  if (configured) return configured;
  return service.config.allowClassical
    ? [...DEFAULT_GROUPS, "x25519", "secp256r1", "secp384r1"]
    : [...DEFAULT_GROUPS];
}

/** The schemes a service accepts from clients. */
function peerSchemesOf(service: QtlsService): string[] {
  return offeredSchemes(service.config.requirePqAuth).map(schemeName);
}

/** The banner text, several lines. */
export function bannerText(
  config: DaemonConfig,
  services: readonly QtlsService[],
  addresses: readonly Address[],
  metricsAddress: Address | undefined,
): string {
  const lines = [
    `qsign ${VERSION}: Q-TLS server (TLS 1.3, post-quantum)`,
    `  crypto: ${formatCryptoProvider()}`,
  ];
  services.forEach((service, i) => {
    const c = service.config;
    const certs = service.materials.current.summaries;
    const allow = Object.entries(c.allow).flatMap(([k, v]: [string, string[]]) =>
      v.map((x) => `${k}=${x}`)
    );
    lines.push(
      `  service ${c.name}: port ${addresses[i].port} (${
        formatAddress(addresses[i])
      }), ${c.mode} mode` +
        (c.mode === "proxy"
          ? ` to ${formatAddress(c.target!)}${c.proxyProtocol ? " with PROXY v2" : ""}`
          : `, replies in ${c.lang}`),
      `    HSM: ${
        c.hsm ? `on (${c.hsm.module}${c.hsm.token ? `, token ${c.hsm.token}` : ""})` : "off"
      }`,
      `    client auth: ${c.clientAuth}${
        c.clientAuth === "none"
          ? ""
          : `, access: ${allow.length ? allow.join(", ") : "any verified chain"}`
      }${c.requirePqAuth ? ", post-quantum signatures required" : ""}`,
      `    groups: ${groupsOf(service).join(", ")}${
        c.allowClassical ? " (classical allowed)" : ""
      }`,
      `    signature schemes: ${
        [...new Set(certs.flatMap((s) => s.schemes))].join(", ")
      } (ours); ` +
        `${peerSchemesOf(service).join(", ")} (accepted)`,
      ...certs.map((s) => `    certificate: ${s.subject}, expires ${s.notAfter}`),
    );
  });
  lines.push(
    metricsAddress
      ? `  metrics: http://${
        formatAddress(metricsAddress)
      }/metrics (also /healthz, /readyz, /status)`
      : "  metrics: off",
  );
  if (config.file) lines.push(`  config: ${config.file}`);
  return lines.join("\n");
}

/** The `/status` document. */
export async function statusDocument(
  services: readonly QtlsService[],
  startedAt: Date,
): Promise<unknown> {
  const total = async (
    metric: { get(): Promise<{ values: { value: number; labels: object }[] }> },
    match: Record<string, string> = {},
  ) =>
    (await metric.get()).values
      .filter((v) =>
        Object.entries(match).every(([k, x]) => (v.labels as Record<string, string>)[k] === x)
      )
      .reduce((sum, v) => sum + v.value, 0);
  return {
    version: VERSION,
    started_at: startedAt.toISOString(),
    uptime_seconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    crypto: describeCryptoProvider(),
    services: services.map((s) => ({
      name: s.config.name,
      listen: formatAddress(s.config.listen),
      listening: s.listening,
      mode: s.config.mode,
      target: s.config.target ? formatAddress(s.config.target) : undefined,
      client_auth: s.config.clientAuth,
      hsm: s.config.hsm !== undefined,
      groups: groupsOf(s),
      accepted_schemes: peerSchemesOf(s),
      active_connections: s.activeConnections,
      backend_ready: s.backend?.ready,
      certificates_loaded_at: s.materials.current.loadedAt.toISOString(),
      certificates: s.materials.current.summaries,
      crls: s.materials.current.crlSummaries.map((crl) => ({
        file: crl.file,
        issuer: crl.issuer,
        this_update: crl.thisUpdate,
        next_update: crl.nextUpdate ?? null,
      })),
    })),
    counters: {
      sessions: await total(metrics.sessions),
      handshakes_ok: await total(metrics.handshakes, { result: "ok" }),
      handshakes_failed: await total(metrics.handshakes, { result: "failed" }),
      connections_active: await total(metrics.connectionsActive),
      bytes_received: await total(metrics.bytesReceived),
      bytes_sent: await total(metrics.bytesSent),
      reloads_ok: await total(metrics.reloads, { result: "ok" }),
      reloads_failed: await total(metrics.reloads, { result: "failed" }),
    },
  };
}
