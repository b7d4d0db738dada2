/**
 * The qsign Grafana dashboard, typed as @grafana/schema's \`Dashboard\` so that \`deno check\`
 * refuses a wrong field; deploy/grafana/qsign-dashboard.json is this object as Grafana imports
 * it. After an edit here, regenerate the JSON (a test compares the two):
 *   .tools/node_modules/.bin/deno run deploy/grafana/dashboard.ts > deploy/grafana/qsign-dashboard.json
 */
import type { Dashboard } from "@grafana/schema";

export const dashboard: Dashboard = {
  "title": "qsign Q-TLS",
  "uid": "qsign-qtls",
  "editable": true,
  "graphTooltip": 1,
  "schemaVersion": 39,
  "version": 1,
  "tags": [
    "qsign",
    "tls",
    "post-quantum",
  ],
  "time": {
    "from": "now-1h",
    "to": "now",
  },
  "refresh": "30s",
  "timezone": "browser",
  "annotations": {
    "list": [],
  },
  "links": [],
  "templating": {
    "list": [
      {
        "name": "datasource",
        "type": "datasource",
        "query": "prometheus",
        "label": "Prometheus",
        "hide": 0,
      },
      {
        "name": "service",
        "type": "query",
        "datasource": {
          "type": "prometheus",
          "uid": "${datasource}",
        },
        "label": "Service",
        "query": {
          "query": "label_values(qtls_handshakes_total, service)",
          "refId": "service",
        },
        "refresh": 2,
        "includeAll": true,
        "multi": true,
        "allValue": ".*",
        "hide": 0,
        "sort": 1,
      },
    ],
  },
  "panels": [
    {
      "id": 100,
      "type": "row",
      "title": "Overview",
      "collapsed": false,
      "gridPos": {
        "x": 0,
        "y": 0,
        "w": 24,
        "h": 1,
      },
      "panels": [],
    },
    {
      "id": 1,
      "type": "stat",
      "title": "Sessions (total)",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 0,
        "y": 1,
        "w": 6,
        "h": 4,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr": 'sum by (service) (qtls_sessions_total{service=~"$service"})',
          "legendFormat": "{{service}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "short",
        },
        "overrides": [],
      },
      "options": {},
      "description": "Authenticated sessions served since the daemon started.",
    },
    {
      "id": 2,
      "type": "stat",
      "title": "Active connections",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 6,
        "y": 1,
        "w": 6,
        "h": 4,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr": 'sum by (service) (qtls_connections_active{service=~"$service"})',
          "legendFormat": "{{service}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "short",
        },
        "overrides": [],
      },
      "options": {},
    },
    {
      "id": 3,
      "type": "stat",
      "title": "Post-quantum share of client offers",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 12,
        "y": 1,
        "w": 6,
        "h": 4,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'sum(rate(qtls_client_offers_total{pq="true",service=~"$service"}[$__rate_interval])) / sum(rate(qtls_client_offers_total{service=~"$service"}[$__rate_interval]))',
          "legendFormat": "post-quantum",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "percentunit",
        },
        "overrides": [],
      },
      "options": {},
      "description":
        "ClientHellos that offered a post-quantum key exchange group, of all ClientHellos.",
    },
    {
      "id": 4,
      "type": "stat",
      "title": "HSM connected",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 18,
        "y": 1,
        "w": 6,
        "h": 4,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr": "min by (instance) (qtls_hsm_connected)",
          "legendFormat": "{{instance}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "bool_yes_no",
        },
        "overrides": [],
      },
      "options": {},
      "description": "1 while the PKCS#11 token answers; absent without an HSM.",
    },
    {
      "id": 5,
      "type": "timeseries",
      "title": "Throughput",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 0,
        "y": 5,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'sum by (service) (rate(qtls_bytes_received_total{service=~"$service"}[$__rate_interval]))',
          "legendFormat": "{{service}} received",
        },
        {
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'sum by (service) (rate(qtls_bytes_sent_total{service=~"$service"}[$__rate_interval]))',
          "legendFormat": "{{service}} sent",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "Bps",
        },
        "overrides": [],
      },
      "options": {},
    },
    {
      "id": 6,
      "type": "timeseries",
      "title": "Handshake time p50 / p99",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 12,
        "y": 5,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'histogram_quantile(0.5, sum by (le, service) (rate(qtls_handshake_duration_seconds_bucket{service=~"$service"}[$__rate_interval])))',
          "legendFormat": "{{service}} p50",
        },
        {
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'histogram_quantile(0.99, sum by (le, service) (rate(qtls_handshake_duration_seconds_bucket{service=~"$service"}[$__rate_interval])))',
          "legendFormat": "{{service}} p99",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "s",
        },
        "overrides": [],
      },
      "options": {},
    },
    {
      "id": 7,
      "type": "timeseries",
      "title": "Handshake errors by reason",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 0,
        "y": 13,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'sum by (service, reason) (rate(qtls_handshake_failures_total{service=~"$service"}[$__rate_interval]))',
          "legendFormat": "{{service}} {{reason}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "reqps",
        },
        "overrides": [],
      },
      "options": {},
      "description":
        "Failed or refused handshakes per second, by the alert sent or received or the limit that refused them.",
    },
    {
      "id": 8,
      "type": "timeseries",
      "title": "Authentication failures",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 12,
        "y": 13,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'sum by (service, reason) (rate(qtls_handshake_failures_total{service=~"$service",reason=~"bad_certificate|unsupported_certificate|certificate_revoked|certificate_expired|certificate_unknown|certificate_required|unknown_ca|access_denied|decrypt_error"}[$__rate_interval]))',
          "legendFormat": "{{service}} {{reason}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "reqps",
        },
        "overrides": [],
      },
      "options": {},
      "description":
        "Peers refused for their certificate chain, their signature or the access policy.",
    },
    {
      "id": 9,
      "type": "timeseries",
      "title": "HSM signatures per second by key",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 0,
        "y": 21,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr": "sum by (key) (rate(qtls_hsm_signatures_total[$__rate_interval]))",
          "legendFormat": "{{key}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "ops",
        },
        "overrides": [],
      },
      "options": {},
      "description": "CertificateVerify signatures made inside the token, by key label.",
    },
    {
      "id": 10,
      "type": "table",
      "title": "Certificate and CRL expiry",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 12,
        "y": 21,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr": 'min by (service, cert) (qtls_cert_expiry_seconds{service=~"$service"}) - time()',
          "legendFormat": "certificate {{service}} {{cert}}",
        },
        {
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'min by (service, crl) (qtls_crl_next_update_seconds{service=~"$service"}) - time()',
          "legendFormat": "CRL {{service}} {{crl}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "s",
        },
        "overrides": [],
      },
      "options": {
        "showHeader": true,
      },
      "description":
        "Seconds until each loaded certificate expires and each CRL reaches its nextUpdate.",
    },
    {
      "id": 200,
      "type": "row",
      "title": "Service $service",
      "collapsed": false,
      "repeat": "service",
      "gridPos": {
        "x": 0,
        "y": 29,
        "w": 24,
        "h": 1,
      },
      "panels": [],
    },
    {
      "id": 11,
      "type": "timeseries",
      "title": "Handshakes by result, group and signature",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 0,
        "y": 30,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr":
            'sum by (result, group, sigalg) (rate(qtls_handshakes_total{service="$service"}[$__rate_interval]))',
          "legendFormat": "{{result}} {{group}} {{sigalg}}",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "reqps",
        },
        "overrides": [],
      },
      "options": {},
    },
    {
      "id": 12,
      "type": "timeseries",
      "title": "Active connections and backend errors",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}",
      },
      "gridPos": {
        "x": 12,
        "y": 30,
        "w": 12,
        "h": 8,
      },
      "targets": [
        {
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr": 'sum(qtls_connections_active{service="$service"})',
          "legendFormat": "active",
        },
        {
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}",
          },
          "expr": 'sum(rate(qtls_backend_errors_total{service="$service"}[$__rate_interval]))',
          "legendFormat": "backend errors/s",
        },
      ],
      "fieldConfig": {
        "defaults": {
          "unit": "short",
        },
        "overrides": [],
      },
      "options": {},
    },
  ],
};

if (import.meta.main) console.log(JSON.stringify(dashboard, null, 2));
