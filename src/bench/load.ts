/**
 * The load generator of `qsign bench`: N connections, C at a time, each a TCP connect, a TLS
 * handshake with qsign's own client and optionally a data phase (see exchange.ts). Bounded twice:
 * no connection starts after `handshakes` have started or after `durationLimitMs`, and each
 * connection's phases have their own time limits.
 */
import type { TlsClientConfig } from "../tls/config.ts";
import { type ConnectionPlan, type ConnectionResult, runConnection } from "./connection.ts";
import { type LoadMeasurement, mergeErrors, type Warmup } from "./report.ts";
import { ResourceMeter } from "./resources.ts";
import { unionOf } from "./stats.ts";
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

/** Now, in milliseconds since the epoch with performance.now()'s resolution: one clock for every process. */
const epochNow = () => performance.timeOrigin + performance.now();

/**
 * Runs the load and measures it. `beforeStart` runs after the warm-up and before the first
 * counted connection: a client process of `--workers` waits there until every process is ready.
 */
export async function runLoad(
  options: LoadOptions,
  beforeStart?: () => Promise<void>,
): Promise<LoadMeasurement> {
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
  await beforeStart?.();

  const meter = new ResourceMeter();
  const startMs = epochNow();
  const deadline = performance.now() + options.durationLimitMs;
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
  const endMs = epochNow();
  const client = meter.stop();

  const completed = results.filter((r) => r.handshakeMs !== undefined);
  // Connection times are this process's performance.now(); the spans go out on the epoch clock.
  const transfers = results.flatMap((r) => (r.data ? [r.data] : []));
  const first = (completed.find((r) => !r.info?.resumed) ?? completed[0])?.info;
  return {
    startMs,
    endMs,
    stoppedBy: started < options.handshakes ? "time" : "count",
    attempted: results.length,
    completed: completed.length,
    resumed: completed.filter((r) => r.info?.resumed).length,
    failed: results.filter((r) => r.failure).length,
    ticketReuses: pool?.reuses,
    warmup,
    latencySamplesMs: completed.map((r) => r.handshakeMs!),
    negotiated: first && {
      version: first.version,
      cipherSuite: first.cipherSuite,
      group: first.group,
      serverSignatureScheme: first.peerSignatureScheme,
      clientSignatureScheme: first.signatureScheme,
      helloRetry: first.helloRetry,
    },
    transfers: options.bytes > 0
      ? {
        count: transfers.length,
        bytesSent: transfers.reduce((total, t) => total + t.sent, 0),
        bytesReceived: transfers.reduce((total, t) => total + t.received, 0),
        spans: unionOf(transfers).map(({ start, end }) => ({
          start: start + performance.timeOrigin,
          end: end + performance.timeOrigin,
        })),
      }
      : undefined,
    errors: mergeErrors([results.flatMap(({ failure }) => {
      if (!failure) return [];
      const { message, ...kind } = failure;
      return [{ ...kind, count: 1, example: message }];
    })]),
    unclosed: results.filter((r) => r.unclosed).length,
    client,
  };
}

/** Full handshakes, `count` at once, to fill `pool` with tickets. */
async function warmUp(plan: ConnectionPlan, count: number, pool: TicketPool): Promise<Warmup> {
  const results = await Promise.all(Array.from({ length: count }, () => runConnection(plan)));
  return {
    connections: count,
    failed: results.filter((r) => r.failure).length,
    tickets: pool.size,
  };
}
