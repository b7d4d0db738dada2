/**
 * One Q-TLS service: its listener, admission limits, handshakes with audit log and metrics, and
 * the handler (echo or proxy) for each authenticated connection. A failing connection ends
 * alone: every error of one connection is caught, logged and counted there.
 */
import type { Address, ServiceConfig } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { OsError } from "../errors.ts";
import { audit } from "../observe/log.ts";
import { FAILED_HANDSHAKE, metrics } from "../observe/metrics.ts";
import { TlsError, TlsHandshakeError } from "../tls/alert.ts";
import type { TlsServerConfig } from "../tls/config.ts";
import { GROUPS } from "../tls/groups.ts";
import { acceptTls, type TlsConnection } from "../tls/conn.ts";
import type { TicketIssuer } from "../tls/tickets.ts";
import { accessPolicy, describeAccessPolicy } from "./access.ts";
import { BackendHealth, type FailureCount } from "./backend_health.ts";
import { type ConnectionHandler, handlerFor } from "./handlers.ts";
import { IdleTimer, PerIpRateLimiter, type RefusalReason } from "./limits.ts";
import { type ProxyHeader, ProxyHeaderError, readProxyHeader } from "./proxy_header.ts";
import type { ServiceMaterials } from "./materials.ts";
import type { MaterialsHolder } from "./reload.ts";
import { deadline, delay } from "../delay.ts";

/** Numbers sessions across every service of the process, from 1. */
export class SessionCounter {
  #last = 0;
  next(service: string): number {
    metrics.sessions.inc({ service });
    return ++this.#last;
  }
  get count(): number {
    return this.#last;
  }
}

/**
 * What a service shares with the same service in the other worker processes (see
 * src/daemon/worker_shared.ts), so that `max_connections` and `backend_max_failures` count for
 * the daemon, not for each worker.
 */
export interface SharedServiceState {
  /** This process's open connections changed to `open`. */
  publishConnections(open: number): void;
  /** Connections open in every process, this one's `own` included. */
  totalConnections(own: number): number;
  backendFailures: FailureCount;
}

/** A connection in progress, so draining can wait for it or close it. */
interface LiveConnection {
  /** Closes it now: close_notify when established, the socket otherwise. */
  close(): Promise<void>;
  /** Settles once its handler has finished (after the `closed` log line). */
  finished: Promise<void>;
}

/** Why draining stopped waiting: the audit event to log, with its fields. */
export interface DrainCutoff {
  event: "drain_timeout" | "drain_interrupted";
  fields?: Record<string, unknown>;
}

/** How long draining waits for handlers to finish after their connections were closed. */
const HANDLER_EXIT_GRACE_MS = 5_000;

/** A running service. */
export class QtlsService {
  readonly #live = new Set<LiveConnection>();
  readonly #rateLimiter: PerIpRateLimiter;
  readonly #handler: ConnectionHandler;
  readonly #accessPolicy;
  readonly #refusalLog = new RefusalLog();
  #listener: Deno.TcpListener | undefined;
  #configCache: { materials: ServiceMaterials; config: TlsServerConfig } | undefined;
  #acceptLoop: Promise<void> | undefined;
  /** Proxy mode: whether the target answers, for `/readyz`. */
  readonly backend?: BackendHealth;

  constructor(
    readonly config: ServiceConfig,
    readonly materials: MaterialsHolder,
    readonly sessions: SessionCounter,
    readonly tickets: TicketIssuer,
    readonly shared?: SharedServiceState,
  ) {
    this.#rateLimiter = new PerIpRateLimiter(
      config.limits.maxHandshakesPerIp,
      undefined,
      config.limits.handshakeBurstPerIp,
    );
    this.#handler = handlerFor(config);
    if (config.mode === "proxy") {
      this.backend = new BackendHealth(
        config.name,
        config.target!,
        config.backend,
        shared?.backendFailures,
      );
    }
    this.#accessPolicy = accessPolicy(config.allow);
  }

  /**
   * Binds the listener and starts accepting; returns the bound address. Worker processes bind
   * the same address with `reusePort` (the kernel spreads connections over them) and only the
   * first announces it.
   */
  listen(options: { reusePort?: boolean; announce?: boolean } = {}): Address {
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({
        hostname: this.config.listen.hostname,
        port: this.config.listen.port,
        ...(options.reusePort ? { reusePort: true } : {}),
      });
    } catch (e) {
      throw new OsError(
        `service ${this.config.name}: cannot listen on ${formatAddress(this.config.listen)}`,
        e,
      );
    }
    this.#listener = listener;
    this.#acceptLoop = this.#accept(listener);
    const address = { hostname: listener.addr.hostname, port: listener.addr.port };
    if (options.announce === false) return address;
    audit.info("listening", {
      service: this.config.name,
      address: formatAddress(address),
      mode: this.config.mode,
    });
    return address;
  }

  get listening(): boolean {
    return this.#listener !== undefined;
  }

  get activeConnections(): number {
    return this.#live.size;
  }

  /** Stops accepting; connections already open go on. */
  async stopAccepting(): Promise<void> {
    const listener = this.#listener;
    this.#listener = undefined;
    listener?.close();
    await this.#acceptLoop;
  }

  /**
   * Waits for the open connections to end, or until `cutoff` settles (the drain timeout, a
   * repeated stop signal) with the reason, then closes the rest with close_notify and waits
   * (bounded) for their handlers to log them closed.
   */
  async drain(cutoff: Promise<DrainCutoff>): Promise<void> {
    const open = [...this.#live];
    if (open.length === 0) return;
    const reason = await Promise.race([
      Promise.all(open.map((c) => c.finished)).then(() => undefined),
      cutoff,
    ]);
    // The listener is closed: no connection joins #live any more.
    const remaining = [...this.#live];
    if (reason === undefined || remaining.length === 0) return;
    audit.warn(reason.event, {
      service: this.config.name,
      ...reason.fields,
      closing: remaining.length,
    });
    await Promise.all(remaining.map((c) => c.close()));
    using grace = delay(HANDLER_EXIT_GRACE_MS, undefined);
    await Promise.race([Promise.all(remaining.map((c) => c.finished)), grace]);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let tcp: Deno.TcpConn;
      try {
        tcp = await listener.accept();
      } catch (e) {
        if (this.#listener !== listener) return; // closed by stopAccepting
        audit.error("accept_failed", { service: this.config.name, error: (e as Error).message });
        // Out of file descriptors and similar: give the process a moment rather than spin.
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      const open = this.shared?.totalConnections(this.#live.size) ?? this.#live.size;
      if (open >= this.config.limits.maxConnections) {
        this.#refuse(tcp, "max_connections", tcp.remoteAddr);
      } else {
        void this.#serve(tcp);
      }
    }
  }

  /** Whether `source` is a load balancer of `proxy_from`, whose connections start with PROXY. */
  #fromBalancer(source: Deno.NetAddr): boolean {
    return this.config.proxyFrom.some((range) => range.contains(source.hostname));
  }

  /**
   * The client a connection stands for, once admitted: the one a balancer's PROXY header names,
   * or the peer itself, within the per-IP limit. Undefined when refused (closed and counted).
   */
  async #admit(tcp: Deno.TcpConn): Promise<Deno.NetAddr | undefined> {
    let client = tcp.remoteAddr;
    if (this.#fromBalancer(client)) {
      const header = await this.#proxyHeader(tcp);
      if (!header) return undefined;
      // LOCAL: the balancer's own connection (a health check), which stands for itself.
      if (header.command === "proxy") client = header.source;
    }
    if (this.#rateLimiter.admit(client.hostname)) return client;
    this.#refuse(tcp, "rate_limited", client);
    return undefined;
  }

  /**
   * The PROXY header of a balancer's connection, read within the handshake timeout; a missing or
   * malformed header closes the connection, is counted, and gives undefined.
   */
  async #proxyHeader(tcp: Deno.TcpConn): Promise<ProxyHeader | undefined> {
    using _ = deadline(this.config.limits.handshakeTimeoutMs, () => closeQuietly(tcp));
    try {
      return await readProxyHeader(tcp);
    } catch (e) {
      const problem = e instanceof ProxyHeaderError ? e.problem : String(e);
      this.#refuse(tcp, "proxy_header", tcp.remoteAddr);
      audit.warn("proxy_header_refused", {
        service: this.config.name,
        balancer: formatAddress(tcp.remoteAddr),
        problem,
      });
      return undefined;
    }
  }

  #refuse(tcp: Deno.TcpConn, reason: RefusalReason, client: Deno.NetAddr): void {
    metrics.handshakeFailures.inc({ service: this.config.name, reason });
    this.#refusalLog.record(this.config.name, reason, formatAddress(client));
    try {
      tcp.close();
    } catch {
      // Already reset by the peer.
    }
  }

  /**
   * One connection from accept to close, admission included: a balancer's connection waiting for
   * its PROXY header is open like any other, for `max_connections` and for draining. Never throws.
   */
  async #serve(tcp: Deno.TcpConn): Promise<void> {
    const startedMs = performance.now();
    const bytes = { received: 0, sent: 0 };
    let tls: TlsConnection | undefined;
    const closing = new AbortController();
    const finished = Promise.withResolvers<void>();
    const live: LiveConnection = {
      close: async () => {
        closing.abort();
        if (tls) await tls.close().catch(() => {});
        else closeQuietly(tcp);
      },
      finished: finished.promise,
    };
    this.#live.add(live);
    this.shared?.publishConnections(this.#live.size);
    metrics.connectionsActive.inc({ service: this.config.name });
    // The TCP peer's address, until a balancer's PROXY header names the client.
    let peer = formatAddress(tcp.remoteAddr);
    let session: number | undefined;
    try {
      const client = await this.#admit(tcp);
      if (!client) return;
      peer = formatAddress(client);
      audit.debug("accepted", { service: this.config.name, peer });
      tls = await this.#handshake(tcp, peer);
      if (!tls) return;
      session = this.sessions.next(this.config.name);
      this.#logHandshake(tls, peer, session);
      using idle = new IdleTimer(this.config.limits.idleTimeoutMs, () => {
        audit.info("idle_timeout", { service: this.config.name, peer, session });
        void live.close();
      });
      const connection = tls;
      await this.#handler(connection, {
        service: this.config,
        session,
        peer,
        idle,
        bytes,
        closing: closing.signal,
        proxyHeader: () => proxyHeaderInfo(connection, tcp, client),
        backend: this.backend,
      });
    } catch (e) {
      audit.warn("connection_error", {
        service: this.config.name,
        peer,
        session,
        error: e instanceof Error ? e.message : String(e),
      });
      await live.close();
    } finally {
      this.#live.delete(live);
      this.shared?.publishConnections(this.#live.size);
      metrics.connectionsActive.dec({ service: this.config.name });
      if (session !== undefined) {
        audit.info("closed", {
          service: this.config.name,
          peer,
          session,
          bytes_received: bytes.received,
          bytes_sent: bytes.sent,
          duration_ms: Math.round(performance.now() - startedMs),
        });
      }
      finished.resolve();
    }
  }

  /** The handshake (the engine bounds it by the handshake timeout); undefined on failure. */
  async #handshake(tcp: Deno.TcpConn, peer: string): Promise<TlsConnection | undefined> {
    try {
      const tls = await acceptTls(tcp, this.#tlsConfig());
      const info = tls.info;
      const service = this.config.name;
      metrics.handshakes.inc({
        service,
        role: "server",
        result: "ok",
        group: info.group,
        sigalg: info.signatureScheme ?? "none",
        resumed: String(info.resumed),
      });
      metrics.handshakeDuration.observe({ service }, info.timings.handshakeMs / 1000);
      if (info.clientOffer) {
        metrics.clientOffers.inc({ service, pq: String(info.clientOffer.pq) });
      }
      return tls;
    } catch (e) {
      closeQuietly(tcp);
      const alert = e instanceof TlsError ? e.alert : "internal_error";
      const reason = alert === "timeout" ? "handshake_timeout" : alert;
      const service = this.config.name;
      // A peer that hangs up without an alert failed nothing: a load balancer's TCP check (no
      // byte sent), or a client giving up mid-handshake (Chromium does when it must first ask
      // its user for a certificate). Counted apart, so that alerts see only real failures.
      if (alert === "connection_closed" && e instanceof TlsHandshakeError && e.phase) {
        if (e.phase === "connect") {
          metrics.probeConnections.inc({ service });
          audit.debug("probe", { service, peer });
        } else {
          metrics.handshakesAborted.inc({ service, phase: e.phase });
          audit.info("handshake_aborted", { service, peer, phase: e.phase });
        }
        return undefined;
      }
      metrics.handshakes.inc({ service, ...FAILED_HANDSHAKE });
      metrics.handshakeFailures.inc({ service, reason });
      const offer = e instanceof TlsHandshakeError ? e.clientOffer : undefined;
      if (offer) {
        metrics.clientOffers.inc({ service, pq: String(offer.groups.some(isPqGroupName)) });
      }
      audit.warn("handshake_failed", {
        service: this.config.name,
        peer,
        alert: reason,
        sent: e instanceof TlsError ? e.sent : undefined,
        reason: e instanceof TlsError ? e.reason : String(e),
        client_offer: offer && {
          groups: offer.groups,
          key_shares: offer.keyShares,
          signature_schemes: offer.signatureSchemes,
          cipher_suites: offer.cipherSuites,
        },
      });
      return undefined;
    }
  }

  /**
   * The engine's configuration for the current materials, built once per set: handshakes share
   * it, and with it the verifier's cache of verified client chains; a reload's new set gets a
   * new one, so new handshakes use the new files while connections in flight keep theirs.
   */
  #tlsConfig(): TlsServerConfig {
    const current = this.materials.current;
    if (this.#configCache?.materials !== current) {
      this.#configCache = { materials: current, config: this.#buildTlsConfig(current) };
    }
    return this.#configCache.config;
  }

  #buildTlsConfig(current: ServiceMaterials): TlsServerConfig {
    return {
      certificates: current.certificates,
      clientAuth: this.config.clientAuth,
      trustAnchors: current.trustAnchors,
      crls: current.crls,
      crlCheck: this.config.crlCheck,
      accessPolicy: this.#accessPolicy,
      groups: this.config.groups,
      cipherSuites: this.config.cipherSuites,
      allowClassical: this.config.allowClassical,
      requirePqAuth: this.config.requirePqAuth,
      alpn: this.config.alpn.length ? this.config.alpn : undefined,
      tickets: current.tickets ?? this.tickets,
      // Tickets of this service resume on this service only, under the same access policy.
      sessionBinding: JSON.stringify({
        service: this.config.name,
        allow: describeAccessPolicy(this.config.allow),
      }),
      resumptionMaxAgeSeconds: this.config.resumptionMaxAgeMs / 1000,
      handshakeTimeoutMs: this.config.limits.handshakeTimeoutMs,
    };
  }

  #logHandshake(tls: TlsConnection, peer: string, session: number): void {
    const info = tls.info;
    const client = info.peerIdentity;
    audit.info("handshake_ok", {
      service: this.config.name,
      peer,
      session,
      group: info.group,
      cipher: info.cipherSuite,
      scheme: info.signatureScheme,
      client_scheme: info.peerSignatureScheme,
      resumed: info.resumed,
      alpn: info.alpn,
      server_name: info.serverName,
      resumption_declined: info.resumptionDeclined,
      client_subject: client?.subject,
      client_serial: client?.serial,
      client_fingerprint: client?.fingerprint,
      handshake_ms: Math.round(info.timings.handshakeMs * 10) / 10,
    });
  }
}

function closeQuietly(tcp: Deno.Conn): void {
  try {
    tcp.close();
  } catch {
    // Already closed.
  }
}

function isPqGroupName(name: string): boolean {
  return GROUPS.some((g) => g.pq && g.name === name);
}

/** The facts for a PROXY v2 header. */
function proxyHeaderInfo(tls: TlsConnection, tcp: Deno.TcpConn, peer: Deno.NetAddr) {
  const info = tls.info;
  const client = info.peerIdentity;
  return {
    client: peer,
    local: tcp.localAddr,
    tls: {
      version: info.version,
      cipher: info.cipherSuite,
      clientSignatureScheme: info.peerSignatureScheme,
      group: info.group,
      serverName: info.serverName,
      alpn: info.alpn,
    },
    clientIdentity: client
      ? {
        // The CN sub-TLV only when the subject has a single CN (see access.ts).
        commonName: client.cn.length === 1 ? client.cn[0] : undefined,
        subject: client.subject,
        fingerprint: client.fingerprint,
      }
      : undefined,
  };
}

/**
 * Refusals come in floods; one log line per second per reason says how many were refused,
 * while the counter `qtls_handshake_failures_total{reason}` counts each.
 */
class RefusalLog {
  readonly #last = new Map<RefusalReason, { atMs: number; suppressed: number }>();

  record(service: string, reason: RefusalReason, peer: string): void {
    const now = performance.now();
    const entry = this.#last.get(reason);
    if (entry && now - entry.atMs < 1000) {
      entry.suppressed++;
      return;
    }
    audit.warn("refused", { service, reason, peer, suppressed: entry?.suppressed ?? 0 });
    this.#last.set(reason, { atMs: now, suppressed: 0 });
  }
}
