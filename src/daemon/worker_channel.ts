/**
 * The channel between the supervisor and one worker process: JSON messages, one per line, over
 * a Unix stream socket in a directory only the daemon's user can enter (see docs/workers.md).
 * The supervisor asks (`{id, op, ...}`) and the worker answers (`{id, result}` or `{id, error}`);
 * the worker also reports its progress unasked (`{type: "listening" | "stopping", ...}`).
 */

const encoder = new TextEncoder();

/** The environment variable that makes `qsign serve` a worker: `<index>:<socket path>`. */
export const WORKER_ENV = "QSIGN_WORKER";

/** The private directory's socket, and the file of shared numbers (src/daemon/worker_shared.ts). */
export const CHANNEL_FILES = { socket: "control.sock", slots: "shared" } as const;

/** One end of the channel. */
export class LineChannel implements Disposable {
  #writes: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(readonly conn: Deno.Conn) {}

  /** Sends one message; messages leave in the order sent. Never throws (a gone peer is EOF). */
  send(message: unknown): Promise<void> {
    const bytes = encoder.encode(`${JSON.stringify(message)}\n`);
    this.#writes = this.#writes.then(async () => {
      if (this.#closed) return;
      try {
        for (let done = 0; done < bytes.length;) {
          done += await this.conn.write(bytes.subarray(done));
        }
      } catch {
        // The peer has gone; its end of the stream says so to the reader.
      }
    });
    return this.#writes;
  }

  /** The messages received, until the peer closes its end (or sends a line that is not JSON). */
  async *messages(): AsyncGenerator<Record<string, unknown>> {
    let buffered = "";
    try {
      for await (const text of this.conn.readable.pipeThrough(new TextDecoderStream())) {
        buffered += text;
        for (let newline; (newline = buffered.indexOf("\n")) >= 0;) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          const message = JSON.parse(line);
          if (typeof message !== "object" || message === null) return;
          yield message;
        }
      }
    } catch {
      // A reset or a line that is not JSON ends the channel like EOF does.
    }
  }

  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Closed by the reader already.
    }
  }
}

/**
 * The first line on a worker's stdin: what must not travel in argv or the environment (both
 * readable in /proc by other users) or depends on the worker's place.
 */
export interface WorkerInit {
  /** The supervisor's ticket key secret, base64. */
  ticketSecret: string;
  /** The ports to bind, one per service, once worker 0 has resolved port 0. */
  listen?: { hostname: string; port: number }[];
  metricsAddress?: { hostname: string; port: number };
  announce: boolean;
  /** The shape of the shared file, as the supervisor made it. */
  slots: { services: number; workers: number };
}
