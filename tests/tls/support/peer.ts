/** Drives the OpenSSL 3.5 reference peer (tests/tls/peer/peer.mjs under Node 26). */
import { PEER_NODE, ROOT } from "../../support/env.ts";

/** TLS options in the peer's vocabulary (Node tls names; groups/sigalgs/alpn as arrays). */
export interface PeerTlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
  groups?: string[];
  sigalgs?: string[];
  ciphersuites?: string;
  alpn?: string[];
  servername?: string;
  session?: string;
  wantSession?: boolean;
  requestCert?: boolean;
  /** CRLs (PEM); Node then checks revocation for the whole chain (CRL_CHECK_ALL). */
  crl?: string | string[];
  rejectUnauthorized?: boolean;
  sniContexts?: Record<string, { cert: string; key: string }>;
}

/** What the peer reports about a client connection it made. */
export interface PeerConnectResult {
  ok: boolean;
  code?: string;
  message?: string;
  protocol?: string;
  cipher?: string;
  alpn?: string;
  peerSubject?: string;
  reused?: boolean;
  group?: string;
  received?: number;
  echoed?: boolean;
  session?: string;
}

export interface PeerServerEvent {
  event: "secure" | "tls-error" | "socket-error" | "unauthorized";
  code?: string;
  cipher?: string;
  alpn?: string;
  peerSubject?: string;
  reused?: boolean;
  servername?: string;
}

/** One Node process answering JSON commands; dispose with `await using`. */
export class Peer implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #waiting = new Map<number, (v: Record<string, unknown>) => void>();
  readonly #done: Promise<void>;
  #nextId = 1;

  /**
   * `middleboxCompat: false` runs OpenSSL with TLS 1.3 middlebox compatibility mode off (an
   * OpenSSL configuration file clearing it), in both roles.
   */
  constructor(options: { middleboxCompat?: boolean } = {}) {
    const config = options.middleboxCompat === false
      ? [`--openssl-config=${ROOT}/tests/tls/peer/no-middlebox-compat.cnf`]
      : [];
    this.#child = new Deno.Command(PEER_NODE, {
      args: [...config, `${ROOT}/tests/tls/peer/peer.mjs`],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#done = this.#readLines();
  }

  async #readLines(): Promise<void> {
    let buffered = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const reply = JSON.parse(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        this.#waiting.get(reply.id)?.(reply);
        this.#waiting.delete(reply.id);
      }
    }
  }

  async #call<T>(command: Record<string, unknown>): Promise<T> {
    const id = this.#nextId++;
    const reply = new Promise<Record<string, unknown>>((resolve) => this.#waiting.set(id, resolve));
    await this.#writer.write(new TextEncoder().encode(JSON.stringify({ id, ...command }) + "\n"));
    return await reply as T;
  }

  /** Starts an echo server; returns its id and port. */
  listen(options: PeerTlsOptions): Promise<{ server: number; port: number }> {
    return this.#call({ op: "listen", options });
  }

  /** Events of a server since the last call (handshakes and their errors). */
  async events(server: number): Promise<PeerServerEvent[]> {
    return (await this.#call<{ events: PeerServerEvent[] }>({ op: "events", server })).events;
  }

  closeServer(server: number): Promise<unknown> {
    return this.#call({ op: "close", server });
  }

  /** Connects, sends `sendBytes` random bytes (or `message`), and checks the echo. */
  connect(
    port: number,
    options: PeerTlsOptions,
    payload: { sendBytes?: number; message?: string } = {},
  ): Promise<PeerConnectResult> {
    return this.#call({ op: "connect", port, options, ...payload });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#child.status;
    await this.#done;
  }
}
