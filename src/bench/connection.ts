/**
 * One benchmark connection: TCP connect, TLS handshake with qsign's client, the optional data
 * phase, and a graceful close (close_notify, then read until the server's close_notify, which
 * is also when NewSessionTickets for resumption arrive). Never throws: every failure becomes a
 * `Failure` naming the alert (or network error) and the phase it happened in.
 */
import type { Address } from "../config/types.ts";
import { TlsError } from "../tls/alert.ts";
import type { HandshakeInfo, TlsClientConfig } from "../tls/config.ts";
import { connectTls, type TlsConnection } from "../tls/conn.ts";
import { BenchProtocolError, type BytesMode, Channel, exchange } from "./exchange.ts";
import type { Interval } from "./stats.ts";

/** What every connection of a run does. */
export interface ConnectionPlan {
  server: Address;
  config: TlsClientConfig;
  /** Application bytes to move after the handshake (0: none). */
  bytes: number;
  bytesMode: BytesMode;
  /** Bound on the data phase. */
  dataTimeoutMs: number;
  /** Bound on waiting for the server's close_notify after ours. */
  closeTimeoutMs: number;
}

export type Phase = "connect" | "handshake" | "data" | "close";

/** Why a connection failed. */
export interface Failure {
  phase: Phase;
  /** The TLS alert name, `timeout`, `connection_closed`, a network error name, or a data error. */
  kind: string;
  /** Whether we sent the alert, received it, or neither (network errors, timeouts). */
  direction: "sent" | "received" | "none";
  message: string;
}

/** What one connection did. Times are `performance.now()` milliseconds. */
export interface ConnectionResult {
  startMs: number;
  /** TCP connect + TLS handshake, present when the handshake completed. */
  handshakeMs?: number;
  info?: HandshakeInfo;
  /** The data phase, when it completed. */
  data?: Interval & { sent: number; received: number };
  /** The server did not close within `closeTimeoutMs` of our close_notify; we closed. */
  unclosed?: boolean;
  failure?: Failure;
}

class PhaseTimeout extends Error {
  constructor(readonly after: number) {
    super(`no progress within ${after} ms`);
  }
}

/** `work`, or a PhaseTimeout after `ms` (then `onTimeout` runs to unblock the work). */
async function within<T>(ms: number, work: Promise<T>, onTimeout: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new PhaseTimeout(ms));
    }, ms);
  });
  work.catch(() => {}); // a failure after the timeout is already accounted for
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Names a failure for the error table. */
export function describeFailure(phase: Phase, e: unknown): Failure {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof TlsError) {
    const withAlert = e.alert !== "timeout" && e.alert !== "connection_closed";
    return {
      phase,
      kind: e.alert,
      direction: withAlert ? (e.sent ? "sent" : "received") : "none",
      message,
    };
  }
  if (e instanceof PhaseTimeout) return { phase, kind: "timeout", direction: "none", message };
  if (e instanceof BenchProtocolError) return { phase, kind: e.kind, direction: "none", message };
  // Deno's network errors (ConnectionRefused, ConnectionReset, …) name themselves.
  const kind = e instanceof Error && e.name !== "Error" ? e.name : "error";
  return { phase, kind, direction: "none", message };
}

/** Runs one connection of `plan` to the end. */
export async function runConnection(plan: ConnectionPlan): Promise<ConnectionResult> {
  const result: ConnectionResult = { startMs: performance.now() };
  let phase: Phase = "connect";
  let tls: TlsConnection | undefined;
  try {
    const tcp = await Deno.connect({ hostname: plan.server.hostname, port: plan.server.port });
    phase = "handshake";
    tls = await connectTls(tcp, plan.config);
    result.handshakeMs = performance.now() - result.startMs;
    result.info = tls.info;
    const connection = tls;
    const channel = new Channel(connection);
    const abort = () => void connection.close().catch(() => {});
    if (plan.bytes > 0) {
      phase = "data";
      const start = performance.now();
      await within(plan.dataTimeoutMs, exchange(channel, plan.bytes, plan.bytesMode), abort);
      result.data = { start, end: performance.now(), sent: plan.bytes, received: channel.received };
    }
    phase = "close";
    await channel.closeWrite();
    try {
      await within(plan.closeTimeoutMs, channel.drain(), abort);
    } catch (e) {
      if (!(e instanceof PhaseTimeout)) throw e;
      result.unclosed = true;
    }
  } catch (e) {
    result.failure = describeFailure(phase, e);
  } finally {
    await tls?.close().catch(() => {});
  }
  return result;
}
