/** What `qsign bench` reports (the `--json` document) and its text form. */
import type { Failure } from "./connection.ts";
import type { BytesMode } from "./exchange.ts";
import type { ResourceUsage } from "./resources.ts";
import type { LatencySummary } from "./stats.ts";

/** Failures of one phase, kind and direction. */
export interface ErrorCount extends Omit<Failure, "message"> {
  count: number;
  /** The message of the first one. */
  example: string;
}

/** The result of one `qsign bench` run. Times in milliseconds, sizes in bytes. */
export interface BenchReport {
  /** host:port */
  target: string;
  serverName?: string;
  startedAt: string;
  settings: {
    handshakes: number;
    concurrency: number;
    resume: boolean;
    bytes: number;
    bytesMode?: BytesMode;
    durationLimitMs: number;
    groups?: string[];
    /** The signature schemes offered to the server (`--sigalgs`), when restricted. */
    signatureSchemes?: string[];
  };
  /** `count`: every requested connection ran; `time`: the duration limit stopped new ones. */
  stoppedBy: "count" | "time";
  /** Wall time of the counted connections, first start to last end. */
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
  warmup?: { connections: number; failed: number; tickets: number };
  /** TCP connect to handshake complete, per completed handshake. */
  latencyMs?: LatencySummary;
  /** From the first full handshake (or the first handshake). */
  negotiated?: {
    version: string;
    cipherSuite: string;
    group: string;
    serverSignatureScheme?: string;
    clientSignatureScheme?: string;
    helloRetry: boolean;
  };
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
  /** This process (the client). */
  client: ResourceUsage;
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
    "client",
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
  return lines.join("\n");
}
