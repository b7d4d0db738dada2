/** qsign's own TLS endpoints for tests: an echo server and a one-shot client. */
import { acceptTls, connectTls, type TlsConnection } from "../../../src/tls/conn.ts";
import type { HandshakeInfo, TlsClientConfig, TlsServerConfig } from "../../../src/tls/config.ts";
import { TlsHandshakeError } from "../../../src/tls/alert.ts";

/** The outcome of one accepted connection. */
export type Outcome = { info: HandshakeInfo } | { error: TlsHandshakeError };

/** A qsign echo server on 127.0.0.1; every handshake outcome is recorded in `outcomes`. */
export class EchoServer implements AsyncDisposable {
  readonly outcomes: Outcome[] = [];
  readonly #listener: Deno.Listener;
  readonly #tasks = new Set<Promise<void>>();
  readonly #loop: Promise<void>;
  #waiters: (() => void)[] = [];

  /** `beforeEcho` runs on the server's connection before each chunk is echoed. */
  constructor(
    readonly config: TlsServerConfig,
    readonly beforeEcho?: (tls: TlsConnection, chunk: Uint8Array) => Promise<void>,
  ) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#loop = this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    for await (const tcp of this.#listener) {
      const task = this.#serve(tcp);
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  async #serve(tcp: Deno.Conn): Promise<void> {
    let tls: TlsConnection;
    try {
      tls = await acceptTls(tcp, this.config);
    } catch (e) {
      this.#record({ error: e as TlsHandshakeError });
      return;
    }
    this.#record({ info: tls.info });
    try {
      const hook = this.beforeEcho;
      await tls.readable
        .pipeThrough(
          new TransformStream({
            async transform(chunk, controller) {
              await hook?.(tls, chunk);
              controller.enqueue(chunk);
            },
          }),
        )
        .pipeTo(tls.writable);
    } catch {
      // the peer went away mid-echo
    }
    await tls.close();
  }

  #record(o: Outcome): void {
    this.outcomes.push(o);
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Waits until at least `n` handshakes have finished (well or badly). */
  async waitFor(n: number): Promise<Outcome[]> {
    while (this.outcomes.length < n) await new Promise<void>((r) => this.#waiters.push(r));
    return this.outcomes;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#loop.catch(() => {});
    await Promise.allSettled([...this.#tasks]);
  }
}

/** Connects with qsign, sends `payload`, reads the same number of bytes back. */
export async function qsignEcho(
  port: number,
  config: TlsClientConfig,
  payload: Uint8Array,
): Promise<{ info: HandshakeInfo; echo: Uint8Array }> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const tls = await connectTls(tcp, config);
  try {
    const writer = tls.writable.getWriter();
    const [echo] = await Promise.all([
      readExactly(tls.readable, payload.length),
      writer.write(payload).finally(() => writer.releaseLock()),
    ]);
    return { info: tls.info, echo };
  } finally {
    await tls.close();
  }
}

/** Reads exactly `n` bytes (or fewer if the stream ends). */
export async function readExactly(stream: ReadableStream<Uint8Array>, n: number) {
  const out = new Uint8Array(n);
  let at = 0;
  const reader = stream.getReader();
  try {
    while (at < n) {
      const { value, done } = await reader.read();
      if (done) break;
      out.set(value.subarray(0, n - at), at);
      at += value.length;
    }
  } finally {
    reader.releaseLock();
  }
  return out.subarray(0, Math.min(at, n));
}
