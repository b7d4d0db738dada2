/**
 * What a service does with an authenticated connection: `echo` answers each message as the
 * original QSIGN example did; `proxy` carries the bytes to the target and back.
 */
import type { ServiceConfig } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { audit } from "../observe/log.ts";
import { metrics } from "../observe/metrics.ts";
import type { TlsConnection } from "../tls/conn.ts";
import type { BackendHealth } from "./backend_health.ts";
import type { IdleTimer } from "./limits.ts";
import { closeOnAbort, type Duplex, pipeBoth, PipeError, tcpDuplex, tlsDuplex } from "./pipe.ts";
import { encodeProxyV2Header, type ProxyHeaderInfo } from "./proxy_protocol.ts";

/** What a handler knows about the connection it serves. */
export interface ConnectionContext {
  service: ServiceConfig;
  /** Session number since the daemon started, from 1. */
  session: number;
  peer: string;
  /** Records traffic for the idle timeout. */
  idle: IdleTimer;
  /** Byte counters of this connection, as seen from the Q-TLS peer. */
  bytes: { received: number; sent: number };
  /** Aborted when the daemon closes the connection (idle timeout, drain): release what it holds. */
  closing: AbortSignal;
  /** The PROXY v2 header facts (client address, TLS, identity). */
  proxyHeader: () => ProxyHeaderInfo;
  /** Proxy mode: where each connect to the target is recorded, for readiness. */
  backend?: BackendHealth;
}

/** Serves one authenticated connection until it ends. */
export type ConnectionHandler = (tls: TlsConnection, context: ConnectionContext) => Promise<void>;

/** The demo reply for a message of `bytes` bytes in session `session`. */
export function echoReply(lang: "ko" | "en", session: number, bytes: number): string {
  return lang === "ko"
    ? `QSIGN 서버 응답 [세션 #${session}]: 메시지 수신 완료 (${bytes} 바이트)\n`
    : `QSIGN server reply [session #${session}]: message received (${bytes} bytes)\n`;
}

const encoder = new TextEncoder();

/**
 * Echo mode: every chunk the peer sends (one TLS record's worth; the demo client sends each
 * message in one write) is answered with the reply line naming its length.
 */
export const echoHandler: ConnectionHandler = async (tls, context) => {
  const duplex = countingDuplex(tlsDuplex(tls), context);
  try {
    for (let chunk = await duplex.read(); chunk !== null; chunk = await duplex.read()) {
      await duplex.write(
        encoder.encode(echoReply(context.service.lang, context.session, chunk.length)),
      );
    }
    await duplex.closeWrite();
  } finally {
    await duplex.close();
  }
};

/**
 * Proxy mode: a new TCP connection to the target per Q-TLS connection, optionally opened with
 * a PROXY v2 header, then bytes both ways with half-close until both directions end.
 */
export const proxyHandler: ConnectionHandler = async (tls, context) => {
  const target = context.service.target!;
  const where = { service: context.service.name, session: context.session };
  const client = countingDuplex(tlsDuplex(tls), context);
  let backend: Deno.TcpConn;
  try {
    backend = await Deno.connect({ hostname: target.hostname, port: target.port });
  } catch (e) {
    metrics.backendErrors.inc({ service: context.service.name });
    context.backend?.record({ ok: false, error: (e as Error).message });
    audit.error("backend_connect_failed", {
      ...where,
      target: formatAddress(target),
      error: (e as Error).message,
    });
    await client.close();
    return;
  }
  context.backend?.record({ ok: true });
  const server = tcpDuplex(backend);
  // The Q-TLS side being closed by the daemon does not wake a read on an idle backend.
  using _ = closeOnAbort(context.closing, server);
  try {
    if (context.service.proxyProtocol) {
      await server.write(encodeProxyV2Header(context.proxyHeader()));
    }
    await pipeBoth(client, server);
  } catch (e) {
    // The backend side failing is the operator's business; the client side failing is the
    // client's; and either failing because the daemon closed the connection is no failure.
    if (context.closing.aborted) {
      audit.debug("proxy_closed_by_daemon", where);
    } else if (!(e instanceof PipeError) || e.side === "b") {
      metrics.backendErrors.inc({ service: context.service.name });
      audit.warn("backend_error", {
        ...where,
        target: formatAddress(target),
        error: (e as Error).message,
      });
    } else {
      audit.debug("client_stream_error", { ...where, error: e.message });
    }
  } finally {
    await Promise.all([client.close(), server.close()]);
  }
};

/** Counts the peer's bytes into the connection's counters and the metrics, and feeds the idle timer. */
function countingDuplex(inner: Duplex, context: ConnectionContext): Duplex {
  return {
    async read() {
      const chunk = await inner.read();
      if (chunk) {
        context.idle.touch();
        context.bytes.received += chunk.length;
        metrics.bytesReceived.inc({ service: context.service.name }, chunk.length);
      }
      return chunk;
    },
    async write(chunk) {
      context.idle.touch();
      await inner.write(chunk);
      context.bytes.sent += chunk.length;
      metrics.bytesSent.inc({ service: context.service.name }, chunk.length);
    },
    closeWrite: () => inner.closeWrite(),
    close: () => inner.close(),
  };
}

/** The handler for a service's mode. */
export function handlerFor(service: ServiceConfig): ConnectionHandler {
  return service.mode === "proxy" ? proxyHandler : echoHandler;
}
