/**
 * Byte pipes between a Q-TLS connection and a plaintext TCP connection (proxy mode and the
 * client-side forwarder): both directions at once, each with backpressure (the next read waits
 * for the previous write), an end of stream in one direction half-closes the other side's write
 * direction while the other direction goes on, and an error on either side closes both.
 */
import type { TlsConnection } from "../tls/conn.ts";

/** One side of a pipe: a TCP connection (`tcpDuplex`) or a Q-TLS one (`tlsDuplex`). */
export interface Duplex {
  /**
   * The next chunk, or null at the end of the stream. The chunk is the caller's until its next
   * read, which may write over it (a TCP side reads into one buffer): copy what must outlive it.
   */
  read(): Promise<Uint8Array | null>;
  write(chunk: Uint8Array): Promise<void>;
  /** Ends the write direction (TCP FIN, TLS close_notify); reading may go on. */
  closeWrite(): Promise<void>;
  /** Closes both directions; never throws. */
  close(): Promise<void>;
}

const TCP_READ_SIZE = 64 * 1024;

/**
 * A TCP connection as a Duplex. Uses `read`/`write` rather than `conn.readable`, whose end of
 * stream closes the whole socket and so would forbid writing after the peer's half-close.
 * Every read goes into the same buffer, made at the first: a new 64 KiB array per read cost
 * about 10 µs (allocating and zeroing it), as much as sealing what was read, and a pipe writes
 * each chunk to the other side before it reads again.
 */
export function tcpDuplex(conn: Deno.Conn): Duplex {
  let closed = false;
  let buffer: Uint8Array | undefined;
  return {
    async read() {
      buffer ??= new Uint8Array(TCP_READ_SIZE);
      const n = await conn.read(buffer);
      return n === null ? null : buffer.subarray(0, n);
    },
    async write(chunk) {
      for (let offset = 0; offset < chunk.length;) {
        offset += await conn.write(chunk.subarray(offset));
      }
    },
    async closeWrite() {
      if (!closed) await conn.closeWrite();
    },
    close() {
      if (!closed) {
        closed = true;
        try {
          conn.close();
        } catch {
          // Already closed by the runtime after an error.
        }
      }
      return Promise.resolve();
    },
  };
}

/**
 * A Q-TLS connection as a Duplex whose chunks are lent (`TlsConnection.readLent`), as the
 * Duplex contract allows: the records of each read are opened into the memory of the last.
 */
export function tlsDuplex(tls: TlsConnection): Duplex {
  return {
    read: () => tls.readLent(),
    write: (chunk) => tls.write(chunk),
    closeWrite: () => tls.closeWrite(),
    close: () => tls.close(),
  };
}

/**
 * Closes `sides` when `signal` aborts (at once if it already has), until disposed: a pending read
 * on an idle side wakes up only when that side is closed.
 */
export function closeOnAbort(signal: AbortSignal, ...sides: Duplex[]): Disposable {
  const closeAll = () => void Promise.all(sides.map((side) => side.close()));
  if (signal.aborted) closeAll();
  else signal.addEventListener("abort", closeAll, { once: true });
  return { [Symbol.dispose]: () => signal.removeEventListener("abort", closeAll) };
}

/** Observes what flows through a pipe, for byte counters and idle timers. */
export interface PipeObserver {
  /** `direction` is `ab` for bytes read from `a` and written to `b`, `ba` for the reverse. */
  onChunk?(direction: "ab" | "ba", bytes: number): void;
}

/**
 * Copies `a` → `b` and `b` → `a` until both directions have ended, then closes both. When either
 * direction fails (a reset, a TLS alert, a write to a closed peer), both sides are closed at once
 * and the error is rethrown, tagged with the side whose read or write failed.
 */
export async function pipeBoth(a: Duplex, b: Duplex, observer: PipeObserver = {}): Promise<void> {
  const pump = async (from: Duplex, to: Duplex, direction: "ab" | "ba") => {
    while (true) {
      const chunk = await from.read().catch((e) => {
        throw new PipeError(direction === "ab" ? "a" : "b", "read", e);
      });
      if (chunk === null) break;
      if (chunk.length === 0) continue;
      observer.onChunk?.(direction, chunk.length);
      await to.write(chunk).catch((e) => {
        throw new PipeError(direction === "ab" ? "b" : "a", "write", e);
      });
    }
    await to.closeWrite().catch((e) => {
      throw new PipeError(direction === "ab" ? "b" : "a", "write", e);
    });
  };
  try {
    // Promise.all rejects at the first failure, so the closes below also stop the other pump.
    await Promise.all([pump(a, b, "ab"), pump(b, a, "ba")]);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

/** A pipe broke: which side (`a` or `b`) and whether reading from it or writing to it failed. */
export class PipeError extends Error {
  constructor(readonly side: "a" | "b", readonly operation: "read" | "write", cause: unknown) {
    super(
      `${operation} on side ${side} failed: ${cause instanceof Error ? cause.message : cause}`,
      {
        cause,
      },
    );
    this.name = "PipeError";
  }
}
