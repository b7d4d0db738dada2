/**
 * The data phase of a benchmark connection: how `--bytes N` moves N bytes and knows the server
 * has them. Three modes, for three kinds of server:
 *
 * - `reply` (qsign's demo protocol, `qsign serve --mode echo`): the server answers every chunk
 *   it reads with one line naming the chunk's length (`… (M 바이트)` or `… (M bytes)`); done
 *   when the lengths add up to N. Any other line is an error.
 * - `echo` (a byte echo: `qsign serve --mode proxy` to a TCP echo, or most test servers): the
 *   server sends every byte back; done when N bytes came back, each checked against what was
 *   sent.
 * - `sink` (any server): send N bytes and close_notify, then read and discard until the server
 *   closes; done at the server's close_notify (or end of stream).
 *
 * Reading runs alongside writing, so a server that answers while we still send never stalls.
 */
import { QsignError } from "../errors.ts";

export const BYTES_MODES = ["reply", "echo", "sink"] as const;
export type BytesMode = typeof BYTES_MODES[number];

/** The server broke the data protocol of the mode. */
export class BenchProtocolError extends QsignError {
  constructor(readonly kind: "echo_mismatch" | "unexpected_reply" | "early_eof", detail: string) {
    super(`${kind}: ${detail}`);
  }
}

/** Application bytes one way per write: one full TLS record. */
export const CHUNK_BYTES = 16_384;
/** The payload repeats with this period; prime, so chunks never line up with it. */
const PATTERN_PERIOD = 251;
const PATTERN = Uint8Array.from(
  { length: CHUNK_BYTES + PATTERN_PERIOD },
  (_, i) => i % PATTERN_PERIOD,
);

/** One connection's application streams, counting what is read and remembering the ends. */
export class Channel {
  received = 0;
  #eof = false;
  #writeClosed = false;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;

  constructor(connection: {
    readable: ReadableStream<Uint8Array>;
    writable: WritableStream<Uint8Array>;
  }) {
    this.#reader = connection.readable.getReader();
    this.#writer = connection.writable.getWriter();
  }

  /** The next chunk, or null once the peer has closed. */
  async read(): Promise<Uint8Array | null> {
    if (this.#eof) return null;
    const { done, value } = await this.#reader.read();
    if (done) {
      this.#eof = true;
      return null;
    }
    this.received += value.length;
    return value;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#writer.write(chunk);
  }

  /** Sends close_notify, once. */
  async closeWrite(): Promise<void> {
    if (this.#writeClosed) return;
    this.#writeClosed = true;
    await this.#writer.close();
  }

  /** Reads and discards until the peer closes. */
  async drain(): Promise<void> {
    while (await this.read() !== null) {
      // discard
    }
  }
}

/** Sends `total` bytes of the pattern, one record per write. */
async function send(channel: Channel, total: number): Promise<void> {
  for (let offset = 0; offset < total;) {
    const size = Math.min(CHUNK_BYTES, total - offset);
    const start = offset % PATTERN_PERIOD;
    await channel.write(PATTERN.subarray(start, start + size));
    offset += size;
  }
}

/** Reads the echo of `total` bytes, checking each byte. */
async function readEcho(channel: Channel, total: number): Promise<void> {
  let offset = 0;
  while (offset < total) {
    const chunk = await channel.read();
    if (chunk === null) {
      throw new BenchProtocolError(
        "early_eof",
        `server closed after echoing ${offset} of ${total} bytes`,
      );
    }
    if (offset + chunk.length > total) {
      throw new BenchProtocolError(
        "echo_mismatch",
        `server echoed more than the ${total} bytes sent`,
      );
    }
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== (offset + i) % PATTERN_PERIOD) {
        throw new BenchProtocolError(
          "echo_mismatch",
          `byte ${offset + i} differs from what was sent`,
        );
      }
    }
    offset += chunk.length;
  }
}

const REPLY_LENGTH = /\((\d+) (?:바이트|bytes)\)\r?$/;

/** Reads reply lines until they acknowledge `total` bytes. */
async function readReplies(channel: Channel, total: number): Promise<void> {
  const decoder = new TextDecoder();
  let text = "";
  let acknowledged = 0;
  while (acknowledged < total) {
    const chunk = await channel.read();
    if (chunk === null) {
      throw new BenchProtocolError(
        "early_eof",
        `server closed after acknowledging ${acknowledged} of ${total} bytes`,
      );
    }
    text += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = text.indexOf("\n")) >= 0) {
      const line = text.slice(0, newline);
      text = text.slice(newline + 1);
      const length = REPLY_LENGTH.exec(line);
      if (!length) {
        throw new BenchProtocolError(
          "unexpected_reply",
          `not a qsign reply line: ${line.slice(0, 80)}`,
        );
      }
      acknowledged += Number(length[1]);
    }
  }
  if (acknowledged > total) {
    throw new BenchProtocolError(
      "unexpected_reply",
      `server acknowledged ${acknowledged} bytes, ${total} were sent`,
    );
  }
}

/**
 * Moves `total` bytes the way `mode` says (see above). Resolves once the server is known to
 * have them; in `sink` mode the connection is then closed in both directions.
 */
export async function exchange(channel: Channel, total: number, mode: BytesMode): Promise<void> {
  switch (mode) {
    case "echo":
      await Promise.all([send(channel, total), readEcho(channel, total)]);
      return;
    case "reply":
      await Promise.all([send(channel, total), readReplies(channel, total)]);
      return;
    case "sink":
      await Promise.all([
        send(channel, total).then(() => channel.closeWrite()),
        channel.drain(),
      ]);
      return;
  }
}
