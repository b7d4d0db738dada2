/**
 * The qsign Grafana dashboard, typed as @grafana/schema's `Dashboard` so that `deno check`
 * refuses a wrong field; deploy/grafana/qsign-dashboard.json is this object as Grafana imports
 * it. After an edit here, regenerate the JSON (a test compares the two):
 *   .tools/node_modules/.bin/deno run deploy/grafana/dashboard.ts > deploy/grafana/qsign-dashboard.json
 */
import type { Dashboard, Panel, RowPanel } from "@grafana/schema";

const datasource = { type: "prometheus", uid: "${datasource}" };
/** Every service the variable selects (overview panels) and the one a repeated row is for. */
const ANY_SERVICE = 'service=~"$service"';
const THIS_SERVICE = 'service="$service"';
const RATE = "[$__rate_interval]";
const AUTH_FAILURES = [
  "bad_certificate",
  "unsupported_certificate",
  "certificate_revoked",
  "certificate_expired",
  "certificate_unknown",
  "certificate_required",
  "unknown_ca",
  "access_denied",
  "decrypt_error",
].join("|");

interface PanelSpec {
  id: number;
  type: "stat" | "timeseries" | "table";
  title: string;
  /** x, y, w, h on Grafana's 24-column grid. */
  at: [number, number, number, number];
  unit: string;
  /** PromQL expression and legend, one per query. */
  queries: [string, string][];
  description?: string;
  options?: Record<string, unknown>;
}

function panel(spec: PanelSpec): Panel {
  const [x, y, w, h] = spec.at;
  return {
    id: spec.id,
    type: spec.type,
    title: spec.title,
    datasource,
    gridPos: { x, y, w, h },
    targets: spec.queries.map(([expr, legendFormat], i) => ({
      refId: String.fromCharCode(65 + i),
      datasource,
      expr,
      legendFormat,
    })),
    fieldConfig: { defaults: { unit: spec.unit }, overrides: [] },
    options: spec.options ?? {},
    ...(spec.description ? { description: spec.description } : {}),
  };
}

function row(id: number, title: string, y: number, repeat?: string): RowPanel {
  return {
    id,
    type: "row",
    title,
    collapsed: false,
    ...(repeat ? { repeat } : {}),
    gridPos: { x: 0, y, w: 24, h: 1 },
    panels: [],
  };
}

export const dashboard: Dashboard = {
  title: "qsign Q-TLS",
  uid: "qsign-qtls",
  editable: true,
  graphTooltip: 1,
  schemaVersion: 39,
  version: 1,
  tags: ["qsign", "tls", "post-quantum"],
  time: { from: "now-1h", to: "now" },
  refresh: "30s",
  timezone: "browser",
  annotations: { list: [] },
  links: [],
  templating: {
    list: [
      { name: "datasource", type: "datasource", query: "prometheus", label: "Prometheus", hide: 0 },
      {
        name: "service",
        type: "query",
        datasource,
        label: "Service",
        query: { query: "label_values(qtls_handshakes_total, service)", refId: "service" },
        refresh: 2,
        includeAll: true,
        multi: true,
        allValue: ".*",
        hide: 0,
        sort: 1,
      },
    ],
  },
  panels: [
    row(100, "Overview", 0),
    panel({
      id: 1,
      type: "stat",
      title: "Sessions (total)",
      at: [0, 1, 6, 4],
      unit: "short",
      queries: [[`sum by (service) (qtls_sessions_total{${ANY_SERVICE}})`, "{{service}}"]],
      description: "Authenticated sessions served since the daemon started.",
    }),
    panel({
      id: 2,
      type: "stat",
      title: "Active connections",
      at: [6, 1, 6, 4],
      unit: "short",
      queries: [[`sum by (service) (qtls_connections_active{${ANY_SERVICE}})`, "{{service}}"]],
    }),
    panel({
      id: 3,
      type: "stat",
      title: "Post-quantum share of client offers",
      at: [12, 1, 6, 4],
      unit: "percentunit",
      queries: [[
        `sum(rate(qtls_client_offers_total{pq="true",${ANY_SERVICE}}${RATE})) / ` +
        `sum(rate(qtls_client_offers_total{${ANY_SERVICE}}${RATE}))`,
        "post-quantum",
      ]],
      description:
        "ClientHellos that offered a post-quantum key exchange group, of all ClientHellos.",
    }),
    panel({
      id: 4,
      type: "stat",
      title: "HSM connected",
      at: [18, 1, 6, 4],
      unit: "bool_yes_no",
      queries: [["min by (instance) (qtls_hsm_connected)", "{{instance}}"]],
      description: "1 while the PKCS#11 token answers; absent without an HSM.",
    }),
    panel({
      id: 5,
      type: "timeseries",
      title: "Throughput",
      at: [0, 5, 12, 8],
      unit: "Bps",
      queries: [
        [
          `sum by (service) (rate(qtls_bytes_received_total{${ANY_SERVICE}}${RATE}))`,
          "{{service}} received",
        ],
        [
          `sum by (service) (rate(qtls_bytes_sent_total{${ANY_SERVICE}}${RATE}))`,
          "{{service}} sent",
        ],
      ],
    }),
    panel({
      id: 6,
      type: "timeseries",
      title: "Handshake time p50 / p99",
      at: [12, 5, 12, 8],
      unit: "s",
      queries: ([["0.5", "p50"], ["0.99", "p99"]] as const).map(([q, name]) => [
        `histogram_quantile(${q}, sum by (le, service) ` +
        `(rate(qtls_handshake_duration_seconds_bucket{${ANY_SERVICE}}${RATE})))`,
        `{{service}} ${name}`,
      ]),
    }),
    panel({
      id: 7,
      type: "timeseries",
      title: "Handshake errors by reason",
      at: [0, 13, 12, 8],
      unit: "reqps",
      queries: [[
        `sum by (service, reason) (rate(qtls_handshake_failures_total{${ANY_SERVICE}}${RATE}))`,
        "{{service}} {{reason}}",
      ]],
      description: "Failed or refused handshakes per second, by the alert sent or received or " +
        "the limit that refused them.",
    }),
    panel({
      id: 8,
      type: "timeseries",
      title: "Authentication failures",
      at: [12, 13, 12, 8],
      unit: "reqps",
      queries: [[
        `sum by (service, reason) (rate(qtls_handshake_failures_total{${ANY_SERVICE},` +
        `reason=~"${AUTH_FAILURES}"}${RATE}))`,
        "{{service}} {{reason}}",
      ]],
      description:
        "Peers refused for their certificate chain, their signature or the access policy.",
    }),
    panel({
      id: 9,
      type: "timeseries",
      title: "HSM signatures per second by key",
      at: [0, 21, 12, 8],
      unit: "ops",
      queries: [[`sum by (key) (rate(qtls_hsm_signatures_total${RATE}))`, "{{key}}"]],
      description: "CertificateVerify signatures made inside the token, by key label.",
    }),
    panel({
      id: 10,
      type: "table",
      title: "Certificate and CRL expiry",
      at: [12, 21, 12, 8],
      unit: "s",
      queries: [
        [
          `min by (service, cert) (qtls_cert_expiry_seconds{${ANY_SERVICE}}) - time()`,
          "certificate {{service}} {{cert}}",
        ],
        [
          `min by (service, crl) (qtls_crl_next_update_seconds{${ANY_SERVICE}}) - time()`,
          "CRL {{service}} {{crl}}",
        ],
      ],
      description:
        "Seconds until each loaded certificate expires and each CRL reaches its nextUpdate.",
      options: { showHeader: true },
    }),
    row(200, "Service $service", 29, "service"),
    panel({
      id: 11,
      type: "timeseries",
      title: "Handshakes by result, group and signature",
      at: [0, 30, 12, 8],
      unit: "reqps",
      queries: [[
        `sum by (result, group, sigalg) (rate(qtls_handshakes_total{${THIS_SERVICE}}${RATE}))`,
        "{{result}} {{group}} {{sigalg}}",
      ]],
    }),
    panel({
      id: 12,
      type: "timeseries",
      title: "Active connections and backend errors",
      at: [12, 30, 12, 8],
      unit: "short",
      queries: [
        [`sum(qtls_connections_active{${THIS_SERVICE}})`, "active"],
        [`sum(rate(qtls_backend_errors_total{${THIS_SERVICE}}${RATE}))`, "backend errors/s"],
      ],
    }),
  ],
};

if (import.meta.main) console.log(JSON.stringify(dashboard, null, 2));
