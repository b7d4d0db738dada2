/** What `qsign bench` reports (the `--json` document) and its text form. */
import type { Failure } from "./connection.ts";
import type { BytesMode } from "./exchange.ts";
import type { ResourceUsage } from "./resources.ts";
import { coveredTime, type Interval, type LatencySummary, summarize } from "./stats.ts";

/** Failures of one phase, kind and direction. */
export interface ErrorCount extends Omit<Failure, "message"> {
  count: number;
  /** The message of the first one. */
  example: string;
}

/** What the first full handshake (or the first handshake) negotiated. */
export interface Negotiated {
  version: string;
  cipherSuite: string;
  group: string;
  serverSignatureScheme?: string;
  clientSignatureScheme?: string;
  helloRetry: boolean;
}

/** The uncounted full handshakes of `--resume` that collected the first tickets. */
export interface Warmup {
  connections: number;
  failed: number;
  tickets: number;
}

/**
 * What one load (the only one, or one client process's) measured, before any summary: the
 * parts a report is made of, which add up across processes. Every client process sends its own
 * to the parent as JSON. Times are milliseconds since the epoch, to a fraction of a millisecond
 * (`performance.timeOrigin + performance.now()`), so that processes on one host share a clock.
 */
export interface LoadMeasurement {
  /** When the counted connections started, and when the last one ended. */
  startMs: number;
  endMs: number;
  stoppedBy: "count" | "time";
  attempted: number;
  completed: number;
  resumed: number;
  failed: number;
  ticketReuses?: number;
  warmup?: Warmup;
  /**
   * TCP connect to handshake complete, one per completed handshake: the samples themselves, so
   * that percentiles of several processes are those of all their handshakes, not an average.
   */
  latencySamplesMs: number[];
  negotiated?: Negotiated;
  /** With `bytes`: the data phases, and when at least one was in progress (disjoint spans). */
  transfers?: { count: number; bytesSent: number; bytesReceived: number; spans: Interval[] };
  errors: ErrorCount[];
  unclosed: number;
  client: ResourceUsage;
}

/** The figures of a run, of all its client processes together or of one of them. */
export interface BenchFigures {
  startedAt: string;
  /** `count`: every requested connection ran; `time`: the duration limit stopped new ones. */
  stoppedBy: "count" | "time";
  /** Wall time of the counted connections, first start to last end (in any process). */
  durationMs: number;
  handshakes: {
    attempted: number;
    completed: number;
    resumed: number;
    full: number;
    /** Connections that failed in any phase (a failure after the handshake counts here too). */
    failed: number;
    /** With `resume`: tickets offered again because the server had issued no fresh one. */
    ticketReuses?: number;
    /** Completed handshakes per second of `durationMs`. */
    perSecond: number;
  };
  /** With `resume`: the uncounted full handshakes that collected the first tickets. */
  warmup?: Warmup;
  /** TCP connect to handshake complete, per completed handshake. */
  latencyMs?: LatencySummary;
  /** From the first full handshake (or the first handshake). */
  negotiated?: Negotiated;
  /** With `bytes`: the data phases. */
  throughput?: {
    transfers: number;
    bytesSent: number;
    bytesReceived: number;
    /** How long at least one data phase was in progress. */
    transferMs: number;
    /** bytesSent per second of transferMs. */
    bytesPerSecond: number;
  };
  errors: ErrorCount[];
  /** Connections whose server never answered our close_notify (closed by us after a while). */
  unclosed: number;
  /** The client: this process, or the client processes added up (CPU, and memory peaks). */
  client: ResourceUsage;
}

/** One client process of `--workers N`: its share, and its own figures unless it failed. */
export interface ProcessReport extends Partial<BenchFigures> {
  /** 1 to N. */
  process: number;
  pid: number;
  share: { handshakes: number; concurrency: number };
  exitCode: number;
  /** When the process failed (no figures): the last lines it wrote on stderr. */
  stderrTail?: string;
}

/** The result of one `qsign bench` run. Times in milliseconds, sizes in bytes. */
export interface BenchReport extends BenchFigures {
  /** host:port */
  target: string;
  serverName?: string;
  settings: {
    handshakes: number;
    concurrency: number;
    /** Client processes the load was split between (1: in the `qsign bench` process itself). */
    workers: number;
    resume: boolean;
    bytes: number;
    bytesMode?: BytesMode;
    durationLimitMs: number;
    groups?: string[];
    /** The signature schemes offered to the server (`--sigalgs`), when restricted. */
    signatureSchemes?: string[];
  };
  /** With more than one worker: each client process, in order. */
  processes?: ProcessReport[];
}

const sum = (values: readonly number[]) => values.reduce((total, x) => total + x, 0);

/** Sums of `field` over the parts that have it; undefined when none has. */
function sumDefined<T>(parts: readonly T[], field: (part: T) => number | undefined) {
  const values = parts.map(field).filter((x): x is number => x !== undefined);
  return values.length > 0 ? sum(values) : undefined;
}

/** Error counts of several lists added up by phase, kind and direction, most frequent first. */
export function mergeErrors(lists: readonly (readonly ErrorCount[])[]): ErrorCount[] {
  const counts = new Map<string, ErrorCount>();
  for (const error of lists.flat()) {
    const key = `${error.phase}/${error.kind}/${error.direction}`;
    const entry = counts.get(key);
    if (entry) entry.count += error.count;
    else counts.set(key, { ...error });
  }
  return [...counts.values()].sort((a, b) => b.count - a.count);
}

/**
 * The figures of `parts` taken as one load: counts, bytes, CPU and memory added up, the wall time
 * from the first start to the last end, percentiles of every latency sample together and
 * throughput over the union of every data phase. One part gives that load's own figures.
 */
export function mergeMeasurements(parts: readonly LoadMeasurement[]): BenchFigures {
  // With no part (every client process failed) the run took no time, now.
  const startMs = parts.length > 0 ? Math.min(...parts.map((p) => p.startMs)) : Date.now();
  const endMs = parts.length > 0 ? Math.max(...parts.map((p) => p.endMs)) : startMs;
  const durationMs = endMs - startMs;
  const completed = sum(parts.map((p) => p.completed));
  const resumed = sum(parts.map((p) => p.resumed));
  const warmups = parts.flatMap((p) => (p.warmup ? [p.warmup] : []));
  const transfers = parts.flatMap((p) => (p.transfers ? [p.transfers] : []));
  const transferMs = coveredTime(transfers.flatMap((t) => t.spans));
  const bytesSent = sum(transfers.map((t) => t.bytesSent));
  const clients = parts.map((p) => p.client);
  return {
    startedAt: new Date(startMs).toISOString(),
    stoppedBy: parts.some((p) => p.stoppedBy === "time") ? "time" : "count",
    durationMs,
    handshakes: {
      attempted: sum(parts.map((p) => p.attempted)),
      completed,
      resumed,
      full: completed - resumed,
      failed: sum(parts.map((p) => p.failed)),
      ticketReuses: sumDefined(parts, (p) => p.ticketReuses),
      perSecond: durationMs > 0 ? completed / (durationMs / 1000) : 0,
    },
    warmup: warmups.length > 0
      ? {
        connections: sum(warmups.map((w) => w.connections)),
        failed: sum(warmups.map((w) => w.failed)),
        tickets: sum(warmups.map((w) => w.tickets)),
      }
      : undefined,
    latencyMs: summarize(parts.flatMap((p) => p.latencySamplesMs)),
    negotiated: parts.find((p) => p.negotiated)?.negotiated,
    throughput: transfers.length > 0
      ? {
        transfers: sum(transfers.map((t) => t.count)),
        bytesSent,
        bytesReceived: sum(transfers.map((t) => t.bytesReceived)),
        transferMs,
        bytesPerSecond: transferMs > 0 ? bytesSent / (transferMs / 1000) : 0,
      }
      : undefined,
    errors: mergeErrors(parts.map((p) => p.errors)),
    unclosed: sum(parts.map((p) => p.unclosed)),
    client: {
      cpuUserMs: sum(clients.map((c) => c.cpuUserMs)),
      cpuSystemMs: sum(clients.map((c) => c.cpuSystemMs)),
      cpuPercent: sum(clients.map((c) => c.cpuPercent)),
      rssPeakBytes: sum(clients.map((c) => c.rssPeakBytes)),
      rssEndBytes: sum(clients.map((c) => c.rssEndBytes)),
      heapUsedPeakBytes: sumDefined(clients, (c) => c.heapUsedPeakBytes),
    },
  };
}

const ms = (x: number) => x.toFixed(1);
const seconds = (milliseconds: number) => (milliseconds / 1000).toFixed(2);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** Human-readable summary, a few aligned lines. */
export function formatReport(r: BenchReport): string {
  const s = r.settings;
  const h = r.handshakes;
  const lines = [
    `qsign bench → ${r.target}${r.serverName ? ` (${r.serverName})` : ""}: ` +
    `${s.handshakes} connections, concurrency ${s.concurrency}` +
    `${s.workers > 1 ? ` in ${s.workers} client processes` : ""}` +
    `${s.resume ? ", resuming sessions" : ""}${
      s.bytes ? `, ${s.bytes} bytes each (${s.bytesMode})` : ""
    }`,
  ];
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(12)} ${text}`);
  if (r.negotiated) {
    const n = r.negotiated;
    row(
      "negotiated",
      `${n.version} ${n.cipherSuite}, ${n.group}, server ${n.serverSignatureScheme ?? "-"}, ` +
        `client ${n.clientSignatureScheme ?? "-"}${n.helloRetry ? ", HelloRetryRequest" : ""}`,
    );
  }
  if (r.warmup) {
    row(
      "warm-up",
      `${r.warmup.connections} full handshakes, ${r.warmup.failed} failed, ` +
        `${r.warmup.tickets} tickets`,
    );
  }
  row(
    "handshakes",
    `${h.completed} of ${h.attempted} completed (${h.resumed} resumed, ${h.full} full), ` +
      `${h.failed} failed, in ${seconds(r.durationMs)} s → ` +
      `${h.perSecond.toFixed(1)} handshakes/s` +
      (r.stoppedBy === "time" ? ` (stopped by the ${s.durationLimitMs / 1000} s limit)` : ""),
  );
  if (h.ticketReuses) {
    row("tickets", `${h.ticketReuses} reused: the server issued no fresh ticket on resumption`);
  }
  if (r.latencyMs) {
    const l = r.latencyMs;
    row(
      "latency ms",
      `p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  ` +
        `(min ${ms(l.min)}, max ${ms(l.max)}, mean ${ms(l.mean)}; TCP connect + handshake)`,
    );
  }
  if (r.throughput) {
    const t = r.throughput;
    row(
      "throughput",
      `${mib(t.bytesPerSecond)}/s (${mib(t.bytesSent)} sent, ${mib(t.bytesReceived)} received ` +
        `in ${t.transfers} transfers, ${ms(t.transferMs)} ms with data in flight)`,
    );
  }
  const c = r.client;
  row(
    r.processes ? "clients" : "client",
    `CPU user ${seconds(c.cpuUserMs)} s, system ${seconds(c.cpuSystemMs)} s ` +
      `(${c.cpuPercent.toFixed(0)}% of one core); RSS peak ${mib(c.rssPeakBytes)}` +
      (c.heapUsedPeakBytes ? `, heap peak ${mib(c.heapUsedPeakBytes)}` : ""),
  );
  if (r.errors.length === 0) row("errors", "none");
  for (const e of r.errors) {
    row(
      "errors",
      `${e.count} × ${e.kind}${e.direction === "none" ? "" : ` (${e.direction})`} ` +
        `during ${e.phase}: ${e.example}`,
    );
  }
  if (r.unclosed) {
    row("note", `${r.unclosed} connections: the server did not answer close_notify; closed`);
  }
  for (const p of r.processes ?? []) {
    const label = `process ${p.process}`;
    const share = `${p.share.handshakes} connections, concurrency ${p.share.concurrency}`;
    if (!p.handshakes || !p.client) {
      row(label, `pid ${p.pid}, ${share}: failed, exit status ${p.exitCode}`);
      for (const line of (p.stderrTail ?? "").split("\n").filter(Boolean)) row("", line);
      continue;
    }
    row(
      label,
      `pid ${p.pid}, ${share}: ${p.handshakes.completed} completed, ${p.handshakes.failed} ` +
        `failed, ${p.handshakes.perSecond.toFixed(1)} handshakes/s` +
        (p.latencyMs ? `, p50 ${ms(p.latencyMs.p50)} p99 ${ms(p.latencyMs.p99)} ms` : "") +
        `, CPU ${seconds(p.client.cpuUserMs + p.client.cpuSystemMs)} s, ` +
        `RSS peak ${mib(p.client.rssPeakBytes)}`,
    );
  }
  return lines.join("\n");
}
