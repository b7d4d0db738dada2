/**
 * The daemon's Prometheus metrics, on prom-client: what an operator alerts on (failed handshakes
 * by alert, certificates close to expiry, HSM down, failed reloads, backend errors, classical
 * clients) plus the standard `process_*` metrics.
 */
import process from "node:process";
import client, { type MetricObjectWithValues, type MetricValue } from "prom-client";

const HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The labels of a failed server handshake: nothing was chosen yet. */
export const FAILED_HANDSHAKE = {
  role: "server",
  result: "failed",
  group: "none",
  sigalg: "none",
  resumed: "false",
} as const;

/** Why a connection is refused before or instead of a TLS alert. */
const REFUSAL_REASONS = [
  "max_connections",
  "rate_limited",
  "handshake_timeout",
  "access_denied",
  "proxy_header",
];

/** A worker's metrics as `getMetricsAsJSON()` gives them, the supervisor's input to aggregation. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** Something `/metrics` can serve. */
export interface Exposition {
  exposition(): Promise<{ contentType: string; body: string }>;
}

/** One registry with every qsign metric. */
export class QtlsMetrics implements Exposition {
  readonly registry = new client.Registry();

  /** Finished handshakes; `group`/`sigalg` are `none` for failures before they were chosen. */
  readonly handshakes = new client.Counter({
    name: "qtls_handshakes_total",
    help: "TLS handshakes by role, result, key exchange group, signature scheme and resumption.",
    labelNames: ["service", "role", "result", "group", "sigalg", "resumed"] as const,
    registers: [this.registry],
  });
  readonly handshakeDuration = new client.Histogram({
    name: "qtls_handshake_duration_seconds",
    help: "Time from the first ClientHello byte to a completed server handshake.",
    labelNames: ["service"] as const,
    buckets: HANDSHAKE_BUCKETS,
    registers: [this.registry],
  });
  /** Refused or failed connections by TLS alert, or by the limit that refused them. */
  readonly handshakeFailures = new client.Counter({
    name: "qtls_handshake_failures_total",
    help: "Failed or refused handshakes by TLS alert or limit (max_connections, rate_limited, " +
      "handshake_timeout, access_denied, proxy_header).",
    labelNames: ["service", "reason"] as const,
    registers: [this.registry],
  });
  /** Which implementation serves each primitive family (see describeCryptoProvider). */
  readonly cryptoBackend = new client.Gauge({
    name: "qtls_crypto_backend_info",
    help: "1 for the implementation (libcrypto, webcrypto, noble) serving each primitive family.",
    labelNames: ["primitive", "backend"] as const,
    // Every worker runs the same build: the series says which, not how many processes.
    aggregator: "first",
    registers: [this.registry],
  });
  /** TCP connections closed before their first byte: load balancers' health checks. */
  readonly probeConnections = new client.Counter({
    name: "qtls_probe_connections_total",
    help: "Connections closed without sending a byte (TCP health checks); not failures.",
    labelNames: ["service"] as const,
    registers: [this.registry],
  });
  /** Handshakes the client abandoned without an alert, by how far they got. */
  readonly handshakesAborted = new client.Counter({
    name: "qtls_handshakes_aborted_total",
    help: "Handshakes the client closed without an alert, by phase (client_hello: before its " +
      "ClientHello arrived whole; handshake: later); not failures.",
    labelNames: ["service", "phase"] as const,
    registers: [this.registry],
  });
  readonly connectionsActive = new client.Gauge({
    name: "qtls_connections_active",
    help: "Q-TLS connections open now, handshaking or established.",
    labelNames: ["service"] as const,
    registers: [this.registry],
  });
  readonly sessions = new client.Counter({
    name: "qtls_sessions_total",
    help: "Authenticated sessions served since start.",
    labelNames: ["service"] as const,
    registers: [this.registry],
  });
  readonly bytesReceived = new client.Counter({
    name: "qtls_bytes_received_total",
    help: "Application bytes received from Q-TLS peers.",
    labelNames: ["service"] as const,
    registers: [this.registry],
  });
  readonly bytesSent = new client.Counter({
    name: "qtls_bytes_sent_total",
    help: "Application bytes sent to Q-TLS peers.",
    labelNames: ["service"] as const,
    registers: [this.registry],
  });
  readonly certExpiry = new client.Gauge({
    name: "qtls_cert_expiry_seconds",
    help: "Unix time at which each service's loaded certificates expire (notAfter).",
    labelNames: ["service", "cert"] as const,
    // Across workers the earliest: a worker whose reload failed still serves the older one.
    aggregator: "min",
    registers: [this.registry],
  });
  readonly crlNextUpdate = new client.Gauge({
    name: "qtls_crl_next_update_seconds",
    help: "Unix time of each service's loaded CRLs' nextUpdate: clients whose chain needs a CRL " +
      "are refused once it has passed.",
    labelNames: ["service", "crl"] as const,
    aggregator: "min",
    registers: [this.registry],
  });
  /** Registered by the first `setHsmConnected`, so a daemon without HSM does not report 0. */
  readonly #hsmConnected = new client.Gauge({
    name: "qtls_hsm_connected",
    help: "1 when the configured PKCS#11 token is reachable, 0 when not (absent without HSM).",
    // 0 as soon as one worker cannot reach its token.
    aggregator: "min",
    registers: [],
  });
  /** Registered with the first token key, like `qtls_hsm_connected`. */
  readonly #hsmSignatures = new client.Counter({
    name: "qtls_hsm_signatures_total",
    help: "Signatures made inside the PKCS#11 token, by key (CKA_LABEL, or id:CKA_ID).",
    labelNames: ["key"] as const,
    registers: [],
  });
  readonly reloads = new client.Counter({
    name: "qtls_reloads_total",
    help: "Reloads (one per SIGHUP or file change that was acted on) by result (ok, failed).",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly backendErrors = new client.Counter({
    name: "qtls_backend_errors_total",
    help: "Proxy mode: connections to the target that failed or broke.",
    labelNames: ["service"] as const,
    registers: [this.registry],
  });
  /** The supervisor's own (`workers` > 1), registered by `superviseWorkers`. */
  readonly #workersConfigured = new client.Gauge({
    name: "qtls_workers_configured",
    help: "Worker processes the daemon runs (the workers setting).",
    registers: [],
  });
  readonly #workersAlive = new client.Gauge({
    name: "qtls_workers_alive",
    help: "Worker processes running and listening now.",
    registers: [],
  });
  readonly #workerRestarts = new client.Counter({
    name: "qtls_worker_restarts_total",
    help: "Worker processes restarted after they exited unasked (crash, kill, out of memory).",
    labelNames: ["worker"] as const,
    registers: [],
  });
  readonly clientOffers = new client.Counter({
    name: "qtls_client_offers_total",
    help: "ClientHellos by whether they offered a post-quantum key exchange group.",
    labelNames: ["service", "pq"] as const,
    registers: [this.registry],
  });

  constructor() {
    // The standard process metrics, made here rather than by prom-client's
    // collectDefaultMetrics: that also starts an event-loop delay monitor, a 10 ms timer that
    // wakes every process of the daemon 100 times a second, idle or not, for nodejs_* metrics
    // that describe Node's event loop (and break promtool's naming rules). Its memory and
    // file-descriptor metrics read /proc/self, which Deno opens only to --allow-all.
    type Usage = ReturnType<typeof process.cpuUsage>;
    for (
      const [name, help, micros] of [
        ["process_cpu_user_seconds_total", "User CPU time spent in seconds.", (u: Usage) => u.user],
        [
          "process_cpu_system_seconds_total",
          "System CPU time spent in seconds.",
          (u: Usage) => u.system,
        ],
        [
          "process_cpu_seconds_total",
          "User and system CPU time spent in seconds.",
          (u: Usage) => u.user + u.system,
        ],
      ] as const
    ) {
      new client.Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(micros(process.cpuUsage()) / 1e6);
        },
      });
    }
    // The daemon's start time is the supervisor's, whose registry comes first in an aggregation.
    const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
    new client.Gauge({
      name: "process_start_time_seconds",
      help: "Start time of the process since unix epoch in seconds.",
      registers: [this.registry],
      aggregator: "first",
      collect() {
        this.set(startSeconds);
      },
    });
    new client.Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      registers: [this.registry],
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    new client.Gauge({
      name: "process_heap_bytes",
      help: "V8 heap size in bytes.",
      registers: [this.registry],
      collect() {
        this.set(Deno.memoryUsage().heapTotal);
      },
    });
  }

  /**
   * Makes every series whose labels are known before traffic exist at 0, so that `rate()` and
   * `absent()` work from the first scrape: per service the connection, byte and session counts,
   * the handshake duration, failed handshakes and refusals by limit, offers by kind; and the
   * reload results. Series keyed by what a handshake chose (group, scheme, alert) appear when
   * it happens.
   */
  initialize(services: readonly string[]): void {
    for (const result of ["ok", "failed"]) this.reloads.inc({ result }, 0);
    for (const service of services) {
      this.connectionsActive.set({ service }, 0);
      this.sessions.inc({ service }, 0);
      this.bytesReceived.inc({ service }, 0);
      this.bytesSent.inc({ service }, 0);
      this.backendErrors.inc({ service }, 0);
      this.handshakeDuration.zero({ service });
      this.handshakes.inc({ service, ...FAILED_HANDSHAKE }, 0);
      for (const reason of REFUSAL_REASONS) this.handshakeFailures.inc({ service, reason }, 0);
      for (const pq of ["true", "false"]) this.clientOffers.inc({ service, pq }, 0);
      this.probeConnections.inc({ service }, 0);
      for (const phase of ["client_hello", "handshake"]) {
        this.handshakesAborted.inc({ service, phase }, 0);
      }
    }
  }

  /** Reports whether the PKCS#11 token answers; the first call makes `qtls_hsm_connected` appear. */
  setHsmConnected(connected: boolean): void {
    if (!this.registry.getSingleMetric("qtls_hsm_connected")) {
      this.registry.registerMetric(this.#hsmConnected);
    }
    this.#hsmConnected.set(connected ? 1 : 0);
  }

  /** Makes `qtls_hsm_signatures_total{key}` exist (at 0) for a token key now in use. */
  hsmKeyInUse(key: string): void {
    if (!this.registry.getSingleMetric("qtls_hsm_signatures_total")) {
      this.registry.registerMetric(this.#hsmSignatures);
    }
    this.#hsmSignatures.inc({ key }, 0);
  }

  /** Counts one signature made in the token with `key`. */
  hsmSigned(key: string): void {
    this.#hsmSignatures.inc({ key });
  }

  /** Makes the supervisor's worker metrics appear: `count` configured, none alive yet. */
  superviseWorkers(count: number): void {
    for (const metric of [this.#workersConfigured, this.#workersAlive, this.#workerRestarts]) {
      this.registry.registerMetric(metric);
    }
    this.#workersConfigured.set(count);
    this.#workersAlive.set(0);
  }

  /** How many workers are listening now. */
  setWorkersAlive(alive: number): void {
    this.#workersAlive.set(alive);
  }

  /** Counts one restart of worker `index`. */
  workerRestarted(index: number): void {
    this.#workerRestarts.inc({ worker: String(index) });
  }

  /**
   * This registry together with the workers' (as `getMetricsAsJSON()` gave them): counters and
   * histograms summed, each other metric by the aggregator its definition names.
   */
  async aggregatedExposition(
    workers: readonly MetricsJson[],
  ): Promise<{ contentType: string; body: string }> {
    const own = await this.registry.getMetricsAsJSON() as MetricsJson;
    const aggregated = client.AggregatorRegistry.aggregate([own, ...workers]);
    return { contentType: this.registry.contentType, body: await aggregated.metrics() };
  }

  /** The exposition, in Prometheus text format. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The process-wide metrics every part of the daemon records into. */
export const metrics = new QtlsMetrics();
