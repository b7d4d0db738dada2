/**
 * The client side (`qsign connect`): one Q-TLS connection for the demo conversation, or a local
 * plaintext listener whose every connection is carried to a Q-TLS server with the client
 * certificate (for gateways that cannot speak post-quantum TLS).
 */
import type { Address, Origin } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { OsError } from "../errors.ts";
import { audit } from "../observe/log.ts";
import type { CrlCheck } from "../pki/verify.ts";
import type { TlsClientConfig } from "../tls/config.ts";
import { connectTls, type TlsConnection, TlsError } from "../tls/conn.ts";
import { MemorySessionCache } from "../tls/tickets.ts";
import { loadCertifiedKeys, loadTrust } from "./materials.ts";
import { closeOnAbort, pipeBoth, streamDuplex, tcpDuplex } from "./pipe.ts";
import type { StopRequests } from "./signals.ts";
import type { KeySource } from "./signer.ts";

/** What `qsign connect` (or `qsign bench`) was told. */
export interface ClientSettings {
  server: Address;
  serverName?: string;
  /** The client certificate; empty `cert` connects without one. */
  credentials: KeySource;
  ca: string[];
  crl: string[];
  /** Which certificates of the server's chain need a CRL (default `available`). */
  crlCheck?: CrlCheck;
  groups?: string[];
  /**
   * The signature schemes accepted for the server's CertificateVerify, most preferred first
   * (default: every one the policy allows).
   */
  signatureSchemes?: string[];
  allowClassical: boolean;
  requirePqAuth: boolean;
  alpn: string[];
  handshakeTimeoutMs?: number;
  origins: Record<string, Origin>;
}

/** Loads the files and builds the engine's client configuration. Throws `ConfigError`. */
export async function buildClientConfig(settings: ClientSettings): Promise<TlsClientConfig> {
  const { certificates } = await loadCertifiedKeys(settings.credentials);
  const { trustAnchors, crls } = await loadTrust(settings);
  return {
    serverName: settings.serverName ?? settings.server.hostname,
    certificate: certificates[0],
    trustAnchors,
    crls,
    crlCheck: settings.crlCheck,
    groups: settings.groups,
    signatureSchemes: settings.signatureSchemes,
    allowClassical: settings.allowClassical,
    requirePqAuth: settings.requirePqAuth,
    alpn: settings.alpn.length ? settings.alpn : undefined,
    handshakeTimeoutMs: settings.handshakeTimeoutMs,
    sessionCache: new MemorySessionCache(),
  };
}

/** Connects and runs the handshake. Throws `TlsError` (or a Deno network error). */
export async function openConnection(
  server: Address,
  config: TlsClientConfig,
): Promise<TlsConnection> {
  let tcp: Deno.TcpConn;
  try {
    tcp = await Deno.connect({ hostname: server.hostname, port: server.port });
  } catch (e) {
    throw new OsError(`cannot connect to ${formatAddress(server)}`, e);
  }
  return await connectTls(tcp, config);
}

/** Two lines on what was negotiated, for people. */
export function describeHandshake(tls: TlsConnection, server: Address): string {
  const info = tls.info;
  return [
    `Q-TLS 연결 완료: ${formatAddress(server)} (handshake ${
      info.timings.handshakeMs.toFixed(1)
    } ms)`,
    `  ${info.version} ${info.cipherSuite}, group ${info.group}, ` +
    `server signature ${info.peerSignatureScheme ?? "none (resumed)"}, ` +
    `client signature ${info.signatureScheme ?? "none"}, resumed ${info.resumed ? "yes" : "no"}` +
    (info.alpn ? `, ALPN ${info.alpn}` : ""),
    `  server: ${info.peerLeaf?.subject ?? "(from the resumed session)"}`,
  ].join("\n");
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The demo conversation: sends each message and prints the server's reply, until `quit`, the
 * end of the input, or the server closing. Returns the number of messages answered.
 */
export async function converse(
  tls: TlsConnection,
  messages: AsyncIterable<string>,
  io: { prompt(): Promise<void>; print(line: string): void },
): Promise<number> {
  const connection = streamDuplex(tls);
  let answered = 0;
  try {
    await io.prompt();
    for await (const message of messages) {
      if (message.trim() === "quit") break;
      if (message === "") {
        await io.prompt();
        continue;
      }
      const bytes = encoder.encode(message);
      await connection.write(bytes);
      io.print(`→ ${message} (${bytes.length} 바이트)`);
      const reply = await connection.read();
      if (reply === null) {
        io.print("서버가 연결을 닫았습니다 (the server closed the connection)");
        return answered;
      }
      io.print(`← ${decoder.decode(reply).replace(/\n$/, "")}`);
      answered++;
      await io.prompt();
    }
    await connection.closeWrite();
  } finally {
    await connection.close();
  }
  return answered;
}

/** Lines of a byte stream (stdin), without their line ends. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncIterable<string> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline).replace(/\r$/, "");
      buffered = buffered.slice(newline + 1);
    }
  }
  if (buffered) yield buffered;
}

/**
 * The local forwarder: accepts plaintext TCP on `listen` and carries each connection to
 * `server` over Q-TLS. At the first stop request it stops accepting and waits for the open
 * connections to end; at a repeated one it closes them. Reports the bound address through
 * `onListening`.
 */
export async function runForwarder(
  listen: Address,
  server: Address,
  config: TlsClientConfig,
  stop: StopRequests,
  onListening: (address: Address) => void = () => {},
): Promise<void> {
  const listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
  const bound = { hostname: listener.addr.hostname, port: listener.addr.port };
  audit.info("listening", { address: formatAddress(bound), forwarding_to: formatAddress(server) });
  onListening(bound);
  const open = new Set<Promise<void>>();
  const closing = new AbortController();
  void stop.requested.then(() => listener.close());
  void stop.repeated.then(() => closing.abort());
  try {
    for await (const local of listener) {
      const forwarding = forward(local, server, config, closing.signal)
        .finally(() => open.delete(forwarding));
      open.add(forwarding);
    }
  } catch (e) {
    // Closing the listener ends the loop with BadResource; anything else is real.
    if (!(e instanceof Deno.errors.BadResource)) throw e;
  }
  await Promise.all(open);
}

/** One forwarded connection; never throws. */
async function forward(
  local: Deno.TcpConn,
  server: Address,
  config: TlsClientConfig,
  closing: AbortSignal,
) {
  const peer = formatAddress(local.remoteAddr);
  const plain = tcpDuplex(local);
  let tls: TlsConnection;
  try {
    tls = await openConnection(server, config);
  } catch (e) {
    audit.warn("upstream_failed", {
      peer,
      server: formatAddress(server),
      alert: e instanceof TlsError ? e.alert : undefined,
      error: (e as Error).message,
    });
    await plain.close();
    return;
  }
  audit.info("forwarding", {
    peer,
    server: formatAddress(server),
    group: tls.info.group,
    cipher: tls.info.cipherSuite,
    resumed: tls.info.resumed,
  });
  const bytes = { up: 0, down: 0 };
  const secure = streamDuplex(tls);
  // Closing both sides ends the pipe; the TLS side says close_notify.
  using _ = closeOnAbort(closing, plain, secure);
  try {
    await pipeBoth(plain, secure, {
      onChunk: (direction, n) => direction === "ab" ? (bytes.up += n) : (bytes.down += n),
    });
  } catch (e) {
    if (!closing.aborted) audit.warn("forward_error", { peer, error: (e as Error).message });
  }
  audit.info("closed", { peer, bytes_sent: bytes.up, bytes_received: bytes.down });
}
  /** TLS 1.3 middlebox compatibility mode (default on). */
  middleboxCompat?: boolean;
    middleboxCompat: settings.middleboxCompat,
