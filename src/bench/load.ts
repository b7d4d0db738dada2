/**
 * The load generator of `qsign bench`: N connections, C at a time, each a TCP connect, a TLS
 * handshake with qsign's own client and optionally a data phase (see exchange.ts). Bounded twice:
 * no connection starts after `handshakes` have started or after `durationLimitMs`, and each
 * connection's phases have their own time limits.
 */
import { formatAddress } from "../config/values.ts";
import type { TlsClientConfig } from "../tls/config.ts";
import { type ConnectionPlan, type ConnectionResult, runConnection } from "./connection.ts";
import type { BenchReport, ErrorCount } from "./report.ts";
import { ResourceMeter } from "./resources.ts";
import { coveredTime, summarize } from "./stats.ts";
import { TicketPool } from "./ticket_pool.ts";

/** What to run. */
export interface LoadOptions {
  server: ConnectionPlan["server"];
  config: TlsClientConfig;
  /** Connections to make (each one handshake). */
  handshakes: number;
  concurrency: number;
  /**
   * Resume sessions: a warm-up of `concurrency` full handshakes (not counted) collects tickets,
   * then each counted connection offers one and keeps the tickets it gets for later ones.
   */
  resume: boolean;
  bytes: number;
  bytesMode: ConnectionPlan["bytesMode"];
  durationLimitMs: number;
  dataTimeoutMs?: number;
  closeTimeoutMs?: number;
}

const DEFAULT_DATA_TIMEOUT_MS = 60_000;
const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;
/** Tickets kept per server, per connection in flight: a server may issue several per handshake. */
const TICKETS_PER_SLOT = 4;

/** Runs the load and reports on it. */
export async function runLoad(options: LoadOptions): Promise<BenchReport> {
  const pool = options.resume ? new TicketPool(TICKETS_PER_SLOT * options.concurrency) : undefined;
  const plan: ConnectionPlan = {
    server: options.server,
    // Without --resume there is nowhere to keep tickets, so none are turned into PSKs.
    config: { ...options.config, sessionCache: pool },
    bytes: options.bytes,
    bytesMode: options.bytesMode,
    dataTimeoutMs: options.dataTimeoutMs ?? DEFAULT_DATA_TIMEOUT_MS,
    closeTimeoutMs: options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS,
  };
  const warmup = pool ? await warmUp(plan, options.concurrency, pool) : undefined;
  if (pool) pool.reuses = 0;

  const startedAt = new Date();
  const meter = new ResourceMeter();
  const start = performance.now();
  const deadline = start + options.durationLimitMs;
  const results: ConnectionResult[] = [];
  let started = 0;
  const worker = async () => {
    while (started < options.handshakes && performance.now() < deadline) {
      started++;
      results.push(await runConnection(plan));
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency, options.handshakes) }, worker),
  );
  const durationMs = performance.now() - start;
  const client = meter.stop();

  const completed = results.filter((r) => r.handshakeMs !== undefined);
  const resumed = completed.filter((r) => r.info?.resumed).length;
  const transfers = results.flatMap((r) => (r.data ? [r.data] : []));
  const transferMs = coveredTime(transfers);
  const bytesSent = transfers.reduce((total, t) => total + t.sent, 0);
  const first = (completed.find((r) => !r.info?.resumed) ?? completed[0])?.info;
  return {
    target: formatAddress(options.server),
    serverName: options.config.serverName,
    startedAt: startedAt.toISOString(),
    settings: {
      handshakes: options.handshakes,
      concurrency: options.concurrency,
      resume: options.resume,
      bytes: options.bytes,
      bytesMode: options.bytes > 0 ? options.bytesMode : undefined,
      durationLimitMs: options.durationLimitMs,
      groups: options.config.groups,
      signatureSchemes: options.config.signatureSchemes,
    },
    stoppedBy: started < options.handshakes ? "time" : "count",
    durationMs,
    handshakes: {
      attempted: results.length,
      completed: completed.length,
      resumed,
      full: completed.length - resumed,
      failed: results.filter((r) => r.failure).length,
      ticketReuses: pool?.reuses,
      perSecond: durationMs > 0 ? completed.length / (durationMs / 1000) : 0,
    },
    warmup,
    latencyMs: summarize(completed.map((r) => r.handshakeMs!)),
    negotiated: first && {
      version: first.version,
      cipherSuite: first.cipherSuite,
      group: first.group,
      serverSignatureScheme: first.peerSignatureScheme,
      clientSignatureScheme: first.signatureScheme,
      helloRetry: first.helloRetry,
    },
    throughput: options.bytes > 0
      ? {
        transfers: transfers.length,
        bytesSent,
        bytesReceived: transfers.reduce((total, t) => total + t.received, 0),
        transferMs,
        bytesPerSecond: transferMs > 0 ? bytesSent / (transferMs / 1000) : 0,
      }
      : undefined,
    errors: countErrors(results),
    unclosed: results.filter((r) => r.unclosed).length,
    client,
  };
}

/** Full handshakes, `count` at once, to fill `pool` with tickets. */
async function warmUp(plan: ConnectionPlan, count: number, pool: TicketPool) {
  const results = await Promise.all(Array.from({ length: count }, () => runConnection(plan)));
  return {
    connections: count,
    failed: results.filter((r) => r.failure).length,
    tickets: pool.size,
  };
}

/** Failures grouped by phase, kind and direction, most frequent first. */
function countErrors(results: ConnectionResult[]): ErrorCount[] {
  const counts = new Map<string, ErrorCount>();
  for (const { failure } of results) {
    if (!failure) continue;
    const key = `${failure.phase}/${failure.kind}/${failure.direction}`;
    const entry = counts.get(key);
    if (entry) entry.count++;
    else {
      counts.set(key, {
        phase: failure.phase,
        kind: failure.kind,
        direction: failure.direction,
        count: 1,
        example: failure.message,
      });
    }
  }
  return [...counts.values()].sort((a, b) => b.count - a.count);
}
