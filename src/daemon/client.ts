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
import { closeOnAbort, pipeBoth, tcpDuplex, tlsDuplex } from "./pipe.ts";
import { delay } from "../delay.ts";
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
  /** IANA suite names to offer, most preferred first (default: the engine's). */
  cipherSuites?: string[];
  allowClassical: boolean;
  /** TLS 1.3 middlebox compatibility mode (default on). */
  middleboxCompat?: boolean;
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
    cipherSuites: settings.cipherSuites,
    allowClassical: settings.allowClassical,
    middleboxCompat: settings.middleboxCompat,
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

/** The words of `qsign connect`'s conversation, in the language of `--lang`. */
export const CONVERSATION_TEXT = {
  ko: {
    connected: "Q-TLS 연결 완료",
    bytes: "바이트",
    serverClosed: "서버가 연결을 닫았습니다 (the server closed the connection)",
    prompt: "메시지> ",
    interrupted: "연결을 종료합니다 (close_notify sent)",
  },
  en: {
    connected: "Q-TLS connection established",
    bytes: "bytes",
    serverClosed: "the server closed the connection",
    prompt: "message> ",
    interrupted: "closing the connection (close_notify sent)",
  },
} as const;
export type ConversationLanguage = keyof typeof CONVERSATION_TEXT;

/** Two lines on what was negotiated, for people. */
export function describeHandshake(
  tls: TlsConnection,
  server: Address,
  lang: ConversationLanguage = "ko",
): string {
  const info = tls.info;
  return [
    `${CONVERSATION_TEXT[lang].connected}: ${formatAddress(server)} (handshake ${
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

/** What the conversation reads from and writes to. */
export interface ConversationIo {
  /** Shows the prompt (nothing with `--send`). */
  prompt(): Promise<void>;
  print(line: string): void;
  /** Ends a prompt line left open: before a notice the operator did not type for, or at Ctrl-D. */
  endPromptLine?(): void;
  /** Ctrl-C: the conversation stops and close_notify is sent. */
  signal?: AbortSignal;
  lang?: ConversationLanguage;
  /**
   * Says the connection is established (`describeHandshake`), once the server has shown it
   * accepted the client: `accepted` settled (its first session ticket, sent after it verified
   * the client's certificate and Finished), or `ANNOUNCE_WAIT_MS` passed without a refusal. A
   * refusal in that time is thrown instead, so "connection established" never precedes it.
   */
  announce?(): void;
  accepted?: Promise<unknown>;
}

/** How long a server that sends no session ticket has to refuse the client before it is
 * announced as connected. */
export const ANNOUNCE_WAIT_MS = 1000;

/**
 * The demo conversation: sends each message and prints the server's reply, until `quit`, the
 * end of the input, Ctrl-C (`io.signal`), or the server closing. One read from the server is
 * always pending, so its close or alert is reported at once, even while the prompt waits for
 * the next line. Returns the number of messages answered; a server's alert is thrown
 * (`TlsError`) after the connection is closed.
 */
export async function converse(
  tls: TlsConnection,
  messages: AsyncIterable<string>,
  io: ConversationIo,
): Promise<number> {
  const text = CONVERSATION_TEXT[io.lang ?? "ko"];
  const replies: Uint8Array[] = [];
  let wake: () => void = () => {};
  // Settles when the server ends the conversation: "closed" at its close_notify, or its error.
  const serverEnd = (async (): Promise<"closed" | Error> => {
    try {
      for (let chunk; (chunk = await tls.read()) !== null;) {
        replies.push(chunk);
        wake();
      }
      return "closed";
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  })();
  const stopped = new Promise<"stopped">((resolve) => {
    if (io.signal?.aborted) resolve("stopped");
    io.signal?.addEventListener("abort", () => resolve("stopped"), { once: true });
  });
  const input = messages[Symbol.asyncIterator]();
  let answered = 0;
  const ended = (end: "closed" | Error, atPrompt: boolean): number => {
    if (atPrompt) io.endPromptLine?.();
    if (end !== "closed") throw end;
    io.print(text.serverClosed);
    return answered;
  };
  try {
    if (io.announce) {
      using waited = delay(ANNOUNCE_WAIT_MS, undefined);
      const first = await Promise.race([serverEnd, io.accepted, waited, stopped]);
      if (first instanceof Error) throw first;
      io.announce();
    }
    await io.prompt();
    for (;;) {
      const next = await Promise.race([input.next(), serverEnd, stopped]);
      if (next === "stopped") {
        io.endPromptLine?.();
        io.print(text.interrupted);
        break;
      }
      if (next === "closed" || next instanceof Error) return ended(next, true);
      if (next.done) {
        io.endPromptLine?.();
        await tls.closeWrite();
        break;
      }
      const message = next.value;
      if (message.trim() === "quit") {
        await tls.closeWrite();
        break;
      }
      if (message === "") {
        await io.prompt();
        continue;
      }
      const bytes = encoder.encode(message);
      await tls.write(bytes);
      io.print(`→ ${message} (${bytes.length} ${text.bytes})`);
      while (replies.length === 0) {
        const woken = new Promise<void>((resolve) => wake = resolve);
        const end = await Promise.race([woken, serverEnd, stopped]);
        if (end === "stopped") break;
        if (end !== undefined && replies.length === 0) return ended(end, false);
      }
      if (replies.length === 0) continue; // stopped while waiting: the loop reports it
      io.print(`← ${decoder.decode(replies.shift()!).replace(/\n$/, "")}`);
      answered++;
      await io.prompt();
    }
  } finally {
    await tls.close();
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
  // Closing both sides ends the pipe; the TLS side says close_notify.
  const secure = tlsDuplex(tls);
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
