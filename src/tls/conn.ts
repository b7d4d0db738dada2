/**
 * The TLS 1.3 engine's public face.
 *
 * ```ts
 * const tcp = await listener.accept();
 * const tls = await acceptTls(tcp, {            // or connectTls(tcp, clientConfig)
 *   certificates: [{ chain, signer }],          // CertifiedKey[]; a function for live reload
 *   clientAuth: "require", trustAnchors: [rootDer],
 * });                                           // throws TlsHandshakeError {alert, reason, sent, peer}
 * tls.info;                                     // HandshakeInfo: suite, group, schemes, peer chain…
 * const chunk = await tls.read();               // Uint8Array, or null at the peer's close_notify
 * await tls.write(bytes);                       // backpressure: resolves once the records are written
 * await tls.keyUpdate(true);                    // new write keys; ask the peer to update too
 * await tls.closeWrite();                       // close_notify; reading goes on
 * await tls.close();                            // close_notify, then the TCP connection
 * tls.readable; tls.writable;                   // the same as web streams, made on first use
 * ```
 *
 * Reading is pulled: the socket is read only when the application reads, so a slow reader
 * slows the peer down through TCP. Post-handshake messages (NewSessionTicket, KeyUpdate) are
 * handled while reading. Writing rekeys by itself before a key has protected
 * `maxRecordsPerKey` records (config.ts; RFC 8446 §5.5). A protocol error ends the connection
 * with the right alert and makes `read` or `write` (and the streams) fail with a `TlsError`;
 * nothing is thrown anywhere else.
 */
import { ownBytes } from "../crypto/small_bytes.ts";
import { ConfigError } from "../errors.ts";
import { deadline } from "../delay.ts";
import {
  type AlertName,
  PeerAlert,
  TlsAlert,
  TlsError,
  TlsHandshakeError,
  TransportClosed,
} from "./alert.ts";
import type { CipherSuite } from "./cipher_suites.ts";
import { ContentType, HandshakeType } from "./codec/constants.ts";
import { decodeKeyUpdate, decodeNewSessionTicket, encodeKeyUpdate } from "./codec/messages.ts";
import type { HandshakeInfo, TlsClientConfig, TlsServerConfig } from "./config.ts";
import { clientHandshake, sessionKey } from "./client.ts";
import { nextTrafficSecret, resumptionPsk } from "./key_schedule.ts";
import { withHandshakeDeadline } from "./peer.ts";
import { type Incoming, RecordLayer } from "./record.ts";
import { type HandshakeResult, serverHandshake, type ServerProgress } from "./server.ts";
import { resolveSchemes, type SignatureScheme } from "./sigschemes.ts";
import type { ClientSessionCache } from "./tickets.ts";

export type { HandshakeInfo, TlsClientConfig, TlsServerConfig } from "./config.ts";
export { TlsError, TlsHandshakeError } from "./alert.ts";

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Rekey well before AES-GCM's key usage limit (2^24.5 records, RFC 8446 §5.5). */
const DEFAULT_MAX_RECORDS_PER_KEY = 2 ** 23;
const MAX_RECORDS_PER_KEY_LIMIT = 2 ** 24;
const MAX_TICKET_LIFETIME = 7 * 24 * 3600;
/**
 * KeyUpdates a peer may send (RFC 8446 §4.6.3 sets no limit; each costs a key derivation, and
 * one with update_requested an answer): at most KEY_UPDATE_BURST within KEY_UPDATE_WINDOW_MS,
 * and KEY_UPDATE_TOTAL over the connection. More is unexpected_message: a peer rekeys at its
 * key usage limit (2^23 records here), not thousands of times a second.
 */
export const KEY_UPDATE_BURST = 32;
export const KEY_UPDATE_WINDOW_MS = 1000;
export const KEY_UPDATE_TOTAL = 65_536;

/** Where resumption tickets go, for a client connection. */
interface TicketSink {
  cache: ClientSessionCache;
  key: string;
  resumptionMasterSecret: Uint8Array;
}

/** What a connection needs besides the handshake's result. */
interface ConnectionOptions {
  peer?: string;
  tickets?: TicketSink;
  maxRecordsPerKey: number;
}

/**
 * `maxRecordsPerKey` of a config, checked before any byte is sent: a bad value closes `tcp` and
 * throws ConfigError.
 */
function maxRecordsPerKey(config: TlsServerConfig | TlsClientConfig, tcp: Deno.Conn): number {
  const limit = config.maxRecordsPerKey ?? DEFAULT_MAX_RECORDS_PER_KEY;
  if (!Number.isInteger(limit) || limit < 2 || limit > MAX_RECORDS_PER_KEY_LIMIT) {
    tcp.close();
    throw new ConfigError(
      "maxRecordsPerKey",
      `must be an integer from 2 to ${MAX_RECORDS_PER_KEY_LIMIT}, got ${limit}`,
    );
  }
  return limit;
}

/**
 * The client's signature_algorithms, checked before any byte is sent: an unusable
 * `signatureSchemes` closes `tcp` and throws ConfigError.
 */
function clientSchemes(config: TlsClientConfig, tcp: Deno.Conn): SignatureScheme[] {
  try {
    return resolveSchemes(config.signatureSchemes, config.requirePqAuth ?? false);
  } catch (e) {
    tcp.close();
    throw new ConfigError("signatureSchemes", (e as Error).message);
  }
}

/** An established TLS 1.3 connection. */
export class TlsConnection {
  /** Resolves once the underlying transport is closed. */
  readonly closed: Promise<void>;
  /** The facts of the handshake. */
  readonly info: HandshakeInfo;

  readonly #records: RecordLayer;
  readonly #suite: CipherSuite;
  #readSecret: Uint8Array;
  #writeSecret: Uint8Array;
  readonly #tickets?: TicketSink;
  readonly #peer?: string;
  readonly #maxRecordsPerKey: number;
  #transportClosed = false;
  #resolveClosed!: () => void;
  #reading = false;
  #readable?: ReadableStream<Uint8Array>;
  #writable?: WritableStream<Uint8Array>;
  #keyUpdatesSent = 0;
  #keyUpdatesReceived = 0;
  /** When the current KeyUpdate window began, and how many came in it. */
  #keyUpdateWindowStart = 0;
  #keyUpdatesInWindow = 0;

  /** @internal Made by acceptTls / connectTls. */
  constructor(records: RecordLayer, result: HandshakeResult, options: ConnectionOptions) {
    this.#records = records;
    this.info = result.info;
    this.#suite = result.suite;
    // Kept for KeyUpdate as long as the connection lives: in memory of their own.
    this.#readSecret = ownBytes(result.readSecret);
    this.#writeSecret = ownBytes(result.writeSecret);
    this.#peer = options.peer;
    this.#tickets = options.tickets;
    this.#maxRecordsPerKey = options.maxRecordsPerKey;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /**
   * Application data from the peer as a stream that closes at its close_notify, made on first
   * use: a connection served through `read` and `write` never pays for two web streams, their
   * queues and promises (a few KiB on each of tens of thousands of idle connections). A `read`
   * while the stream has one pending (or the other way round) is a TypeError.
   */
  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const chunk = await this.read();
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
      cancel: () => this.close(),
    }, { highWaterMark: 0 });
  }

  /** Application data to the peer as a stream, made on first use; closing it is `closeWrite`. */
  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.write(chunk),
      close: () => this.closeWrite(),
      abort: () => this.close(),
    });
  }

  /**
   * The next application data the peer sent (the records that had arrived, joined), or null once
   * it sent close_notify or the connection was closed here. Rejects with a `TlsError` when the
   * connection fails (the alert, if one is due, already sent). One read at a time.
   */
  read(): Promise<Uint8Array | null> {
    return this.#readData(false);
  }

  /**
   * As `read`, but the chunk is lent: the caller is done with it when it reads again, and the
   * connection may then open what comes next into its memory, instead of making an array per
   * read. For a caller that passes each chunk on before its next read (a pipe, the echo
   * responder); once a chunk was read to keep, later lent ones are made anew as well.
   */
  readLent(): Promise<Uint8Array | null> {
    return this.#readData(true);
  }

  async #readData(lend: boolean): Promise<Uint8Array | null> {
    if (this.#reading) throw new TypeError("TlsConnection.read: a read is already pending");
    this.#reading = true;
    try {
      for (;;) {
        const incoming: Incoming | null = await this.#records.readIncoming(lend);
        if (!incoming) {
          if (this.#records.writeClosed) this.#closeTransport();
          return null;
        }
        if (incoming.kind === "data") {
          if (incoming.data.length) return incoming.data;
          continue;
        }
        await this.#onHandshakeMessage(incoming.message.type, incoming.message.body);
      }
    } catch (e) {
      if (this.#transportClosed && e instanceof TransportClosed) return null;
      throw await this.#fail(e);
    } finally {
      this.#reading = false;
    }
  }

  /** Sends close_notify (once): the end of what we write. Reading goes on. Never rejects. */
  closeWrite(): Promise<void> {
    return this.#records.sendAlert("close_notify");
  }

  /** KeyUpdates sent and received so far (including automatic ones and answers to requests). */
  get keyUpdates(): { sent: number; received: number } {
    return { sent: this.#keyUpdatesSent, received: this.#keyUpdatesReceived };
  }

  /** Sends a KeyUpdate and switches to new write keys; `requestPeer` asks the peer to do the same. */
  async keyUpdate(requestPeer: boolean): Promise<void> {
    try {
      await this.#records.exclusive(() => this.#keyUpdateUnlocked(requestPeer));
    } catch (e) {
      throw this.#toError(e);
    }
  }

  /** Sends KeyUpdate under the old keys, then switches; the caller holds the write lock. */
  async #keyUpdateUnlocked(requestPeer: boolean): Promise<void> {
    await this.#records.writeUnlocked(ContentType.handshake, encodeKeyUpdate(requestPeer));
    this.#writeSecret = ownBytes(nextTrafficSecret(this.#suite, this.#writeSecret));
    await this.#records.setWriteKeysUnlocked(this.#suite, this.#writeSecret);
    this.#keyUpdatesSent++;
  }

  /** Sends close_notify (once) and closes the transport. */
  async close(): Promise<void> {
    await this.#records.sendAlert("close_notify");
    this.#closeTransport();
    await this.closed;
  }

  #closeTransport(): void {
    if (this.#transportClosed) return;
    this.#transportClosed = true;
    this.#records.discard();
    try {
      this.#records.transport.close();
    } catch {
      // Already closed by the runtime.
    }
    this.#resolveClosed();
  }

  async #onHandshakeMessage(type: number, body: Uint8Array): Promise<void> {
    if (type === HandshakeType.key_update) {
      const requested = decodeKeyUpdate(body);
      this.#countKeyUpdate();
      this.#readSecret = ownBytes(nextTrafficSecret(this.#suite, this.#readSecret));
      await this.#records.setReadKeys(this.#suite, this.#readSecret);
      this.#keyUpdatesReceived++;
      if (requested) await this.keyUpdate(false);
      return;
    }
    if (type === HandshakeType.new_session_ticket && this.info.role === "client") {
      this.#storeTicket(body);
      return;
    }
    throw new TlsAlert("unexpected_message", `handshake message ${type} after the handshake`);
  }

  /** Counts a received KeyUpdate against the limits above; unexpected_message past them. */
  #countKeyUpdate(): void {
    const now = performance.now();
    if (now - this.#keyUpdateWindowStart >= KEY_UPDATE_WINDOW_MS) {
      this.#keyUpdateWindowStart = now;
      this.#keyUpdatesInWindow = 0;
    }
    if (++this.#keyUpdatesInWindow > KEY_UPDATE_BURST) {
      throw new TlsAlert(
        "unexpected_message",
        `more than ${KEY_UPDATE_BURST} KeyUpdates within ${KEY_UPDATE_WINDOW_MS} ms`,
      );
    }
    if (this.#keyUpdatesReceived >= KEY_UPDATE_TOTAL) {
      throw new TlsAlert("unexpected_message", `more than ${KEY_UPDATE_TOTAL} KeyUpdates`);
    }
  }

  #storeTicket(body: Uint8Array): void {
    const t = decodeNewSessionTicket(body);
    const sink = this.#tickets;
    if (!sink || t.lifetimeSeconds === 0) return;
    sink.cache.put(sink.key, {
      ticket: t.ticket.slice(),
      psk: ownBytes(resumptionPsk(this.#suite, sink.resumptionMasterSecret, t.nonce)),
      suite: this.#suite.id,
      ageAdd: t.ageAdd,
      receivedMs: Date.now(),
      lifetimeSeconds: Math.min(t.lifetimeSeconds, MAX_TICKET_LIFETIME),
      alpn: this.info.alpn,
      peerCertificates: this.info.peerCertificates,
    });
  }

  /**
   * Writes `chunk` as application data, rekeying whenever the current key has one record left
   * (kept for the KeyUpdate), so no key protects more than maxRecordsPerKey records. Resolves
   * once the records are written to the transport; rejects with a `TlsError` when the
   * connection fails.
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (!chunk.length) return;
    const records = this.#records;
    try {
      await records.exclusive(async () => {
        for (let at = 0; at < chunk.length;) {
          if (records.writeSequence >= this.#maxRecordsPerKey - 1) {
            await this.#keyUpdateUnlocked(false);
          }
          const room = this.#maxRecordsPerKey - 1 - records.writeSequence;
          const piece = chunk.subarray(at, at + room * records.peerMaxFragment);
          await records.writeUnlocked(ContentType.application_data, piece);
          at += piece.length;
        }
      });
    } catch (e) {
      throw await this.#fail(e);
    }
  }

  /** Ends the connection after an error: alert if we must send one, close, describe. */
  async #fail(e: unknown): Promise<TlsError> {
    const error = this.#toError(e);
    const alert = alertFor(e);
    if (alert) await this.#records.sendAlert(alert);
    this.#closeTransport();
    return error;
  }

  #toError(e: unknown): TlsError {
    return toTlsError(e, this.#peer, TlsError);
  }
}

/**
 * The alert to send for an error that ends a connection: the one a TlsAlert names, none when
 * the peer sent one or the transport is gone, internal_error for anything else.
 */
function alertFor(e: unknown): AlertName | undefined {
  if (e instanceof TlsAlert) return e.alert;
  if (e instanceof PeerAlert || e instanceof TransportClosed) return undefined;
  return "internal_error";
}

function toTlsError<T extends TlsError>(
  e: unknown,
  peer: string | undefined,
  Kind: new (...args: ConstructorParameters<typeof TlsError>) => T,
): T {
  if (e instanceof TlsAlert) return new Kind(e.alert, e.reason, true, peer, { cause: e });
  if (e instanceof PeerAlert) return new Kind(e.alert, "", false, peer, { cause: e });
  if (e instanceof TransportClosed) {
    return new Kind("connection_closed", e.message, false, peer, { cause: e });
  }
  if (e instanceof TlsError) return new Kind(e.alert, e.reason, e.sent, peer, { cause: e });
  const message = e instanceof Error ? e.message : String(e);
  return new Kind("internal_error", message, true, peer, { cause: e });
}

/**
 * Turns Nagle's algorithm off on a TCP connection. The engine writes each flight and each
 * application chunk as whole records, so Nagle only adds stalls: a client's Finished followed by
 * its first record (or close_notify) would wait for the server's delayed ACK, 40 ms on Linux
 * when the server has nothing to send (OpenSSL after a resumed handshake).
 */
function setNoDelay(tcp: Deno.Conn): void {
  const setter = (tcp as Partial<Deno.TcpConn>).setNoDelay;
  if (typeof setter !== "function") return; // not TCP (a Unix socket, a test transport)
  try {
    setter.call(tcp, true);
  } catch {
    // The socket is already gone; the handshake will say so.
  }
}

function remoteAddress(tcp: Deno.Conn): { text?: string; port?: number } {
  try {
    const addr = tcp.remoteAddr;
    if ("hostname" in addr) return { text: `${addr.hostname}:${addr.port}`, port: addr.port };
    return { text: "path" in addr ? `${addr.transport}:${addr.path}` : addr.transport };
  } catch {
    return {};
  }
}

/**
 * Runs a handshake under the timeout; on failure sends the alert, closes the transport and
 * throws TlsHandshakeError.
 */
async function handshake(
  records: RecordLayer,
  timeoutMs: number,
  peer: string | undefined,
  work: () => Promise<HandshakeResult>,
  progress?: ServerProgress,
): Promise<HandshakeResult> {
  let expiry: Disposable | undefined;
  const timeout = new Promise<never>((_, reject) => {
    expiry = deadline(
      timeoutMs,
      () =>
        reject(
          new TlsHandshakeError(
            "timeout",
            `handshake timed out after ${timeoutMs} ms`,
            false,
            peer,
          ),
        ),
    );
  });
  // Peer chain verification gives up at the same deadline (peer.ts).
  const running = withHandshakeDeadline(Date.now() + timeoutMs, work);
  try {
    return await Promise.race([running, timeout]);
  } catch (e) {
    running.catch(() => {});
    let error: TlsHandshakeError;
    if (e instanceof TlsHandshakeError) {
      error = e;
    } else {
      error = toTlsError(e, peer, TlsHandshakeError);
      const alert = alertFor(e);
      if (alert) await records.sendAlert(alert);
    }
    if (progress) {
      if (progress.clientOffer) error.clientOffer = progress.clientOffer;
      error.phase = records.bytesReceived === 0
        ? "connect"
        : progress.clientOffer
        ? "handshake"
        : "client_hello";
    }
    records.discard();
    try {
      records.transport.close();
    } catch {
      // already closed
    }
    throw error;
  } finally {
    expiry?.[Symbol.dispose]();
  }
}

/**
 * Runs the server handshake on an accepted TCP connection, with TCP_NODELAY set (see
 * `setNoDelay`). Throws TlsHandshakeError.
 */
export async function acceptTls(tcp: Deno.Conn, config: TlsServerConfig): Promise<TlsConnection> {
  const recordLimit = maxRecordsPerKey(config, tcp);
  setNoDelay(tcp);
  const records = new RecordLayer(tcp, config.handshakeBufferBudget);
  const peer = remoteAddress(tcp).text;
  const progress: ServerProgress = {};
  const result = await handshake(
    records,
    config.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    peer,
    () => serverHandshake(records, config, progress),
    progress,
  );
  return new TlsConnection(records, result, { peer, maxRecordsPerKey: recordLimit });
}

/**
 * Runs the client handshake on a connected TCP connection, with TCP_NODELAY set (see
 * `setNoDelay`). Throws TlsHandshakeError.
 */
export async function connectTls(tcp: Deno.Conn, config: TlsClientConfig): Promise<TlsConnection> {
  const recordLimit = maxRecordsPerKey(config, tcp);
  const schemes = clientSchemes(config, tcp);
  setNoDelay(tcp);
  const records = new RecordLayer(tcp, config.handshakeBufferBudget);
  const { text: peer, port } = remoteAddress(tcp);
  const key = sessionKey(config, port);
  const session = config.sessionCache?.take(key);
  const result = await handshake(
    records,
    config.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    peer,
    () => clientHandshake(records, config, schemes, session, peer),
  );
  const tickets = config.sessionCache && result.resumptionMasterSecret
    ? {
      cache: config.sessionCache,
      key,
      resumptionMasterSecret: ownBytes(result.resumptionMasterSecret),
    }
    : undefined;
  return new TlsConnection(records, result, { peer, tickets, maxRecordsPerKey: recordLimit });
}
