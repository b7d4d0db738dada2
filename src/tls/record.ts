/**
 * The record layer (RFC 8446 §5): framing over a byte transport, AEAD protection with per-record
 * nonces, size limits (including record_size_limit, RFC 8449), alerts, and reassembly of
 * handshake messages that span or share records.
 *
 * Reads go into one reusable buffer; a received record's plaintext is a fresh array only when it
 * was decrypted. Writes are serialised by a lock so records leave in sequence-number order even
 * when the application, a KeyUpdate response and an alert race; a write's records are built in
 * one buffer, each sealed behind its header, and sent with one transport write per WRITE_BATCH,
 * at once for the first write of a turn of the event loop and joined with the others of the turn
 * at the next (PENDING_WRITE_LIMIT).
 */
import { setImmediate } from "node:timers";
import { getCryptoProvider } from "../crypto/index.ts";
import { delay } from "../delay.ts";
import { type Aead, AeadAuthError } from "../crypto/provider.ts";
import {
  type AlertName,
  alertName,
  ALERTS,
  PeerAlert,
  TlsAlert,
  TransportClosed,
} from "./alert.ts";
import type { CipherSuite } from "./cipher_suites.ts";
import { concat } from "./codec/bytes.ts";
import {
  ContentType,
  HandshakeType,
  MAX_CIPHERTEXT_EXPANSION,
  MAX_PLAINTEXT,
  TLS12,
} from "./codec/constants.ts";
import type { HandshakeMessage } from "./codec/messages.ts";
import { trafficKeys } from "./key_schedule.ts";

/** The byte stream under TLS; `Deno.Conn` is one. */
export interface Transport {
  read(p: Uint8Array): Promise<number | null>;
  /** As Deno.Conn's: `p` is not read once the promise settled (its memory is used again). */
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

const HEADER = 5;

/**
 * Arrays that are never written, shared instead of made anew: in Deno every new typed array
 * costs about 0.7 µs (none is allocated on V8's heap), and records are written and buffers
 * released many times per connection. A protected record's inner content type is one of these.
 */
const NO_BYTES = new Uint8Array(0);
const INNER_CONTENT_TYPES = new Map<number, Uint8Array>(
  Object.values(ContentType).map((type) => [type, Uint8Array.of(type)]),
);
/**
 * Largest ClientHello accepted: real ones, PQ key shares included, are a few KB; the limit
 * bounds what a peer can make the server hold before anything is authenticated.
 */
export const MAX_CLIENT_HELLO = 64 * 1024;
/** Largest Certificate: ten ML-DSA-87 certificates are about 75 KB. */
export const MAX_CERTIFICATE_MESSAGE = 128 * 1024;
/** Largest of any other handshake message (CertificateRequest's authorities, tickets…). */
export const MAX_HANDSHAKE_MESSAGE = 64 * 1024;
/**
 * Records handled from what one transport read brought before the event loop gets a turn: a
 * peer sending thousands of tiny records in one segment would otherwise hold it (each record
 * is cheap, but awaiting an already-resolved promise never lets timers or other sockets in).
 */
const RECORDS_PER_TURN = 256;
/** Default of the process-wide handshake buffer budget (`HandshakeBufferBudget`). */
export const DEFAULT_HANDSHAKE_BUFFER_BUDGET = 32 * 1024 * 1024;

function maxMessageLength(type: number): number {
  if (type === HandshakeType.client_hello) return MAX_CLIENT_HELLO;
  if (type === HandshakeType.certificate) return MAX_CERTIFICATE_MESSAGE;
  return MAX_HANDSHAKE_MESSAGE;
}

/**
 * Bytes that connections hold for handshake messages spanning several records, shared by every
 * connection that uses it (by default one per process), so that many peers each sending the
 * start of a large message cannot together make the process hold more than `limit`. A message
 * that would take more is refused (internal_error) and counted in `refusals`.
 */
export class HandshakeBufferBudget {
  #used = 0;
  /** Messages refused because the budget was spent. */
  refusals = 0;

  constructor(readonly limit: number = DEFAULT_HANDSHAKE_BUFFER_BUDGET) {}

  /** Bytes held now. */
  get used(): number {
    return this.#used;
  }

  /** Takes `n` bytes; throws TlsAlert (and counts) when they are not there. */
  reserve(n: number): void {
    if (this.#used + n > this.limit) {
      this.refusals++;
      throw new TlsAlert(
        "internal_error",
        `handshake buffer budget of ${this.limit} bytes exhausted (${this.#used} held)`,
      );
    }
    this.#used += n;
  }

  release(n: number): void {
    this.#used = Math.max(0, this.#used - n);
  }
}

/** The budget connections share unless their config names another. */
export const processHandshakeBudget = new HandshakeBufferBudget();

/**
 * Reassembles handshake messages from record fragments in linear time: the 4-byte header is
 * collected first, then one buffer of exactly the declared length is filled as fragments come
 * (RFC 8446 §5.1 lets messages span and share records). The declared length is checked against
 * the message type's limit before anything is allocated, and a buffer held across records is
 * charged to the shared budget until the message is complete or the connection goes.
 */
class HandshakeReassembly {
  readonly #header = new Uint8Array(4);
  #headerFilled = 0;
  #message?: Uint8Array;
  #filled = 0;
  /** Bytes of `#message` charged to the budget (0 when it was completed within one record). */
  #charged = 0;
  readonly #ready: HandshakeMessage[] = [];
  #readyBytes = 0;

  constructor(readonly budget: HandshakeBufferBudget) {}

  /** Bytes received and not yet taken as messages: inside a message when non-zero. */
  get buffered(): number {
    return this.#readyBytes + this.#headerFilled + this.#filled;
  }

  /** Adds a record's handshake bytes (copied: the record may be a view into the read buffer). */
  push(data: Uint8Array): void {
    let at = 0;
    while (at < data.length) {
      if (!this.#message) {
        const n = Math.min(4 - this.#headerFilled, data.length - at);
        this.#header.set(data.subarray(at, at + n), this.#headerFilled);
        this.#headerFilled += n;
        at += n;
        if (this.#headerFilled < 4) return;
        this.#begin(data.length - at);
        continue;
      }
      const n = Math.min(this.#message.length - this.#filled, data.length - at);
      this.#message.set(data.subarray(at, at + n), this.#filled);
      this.#filled += n;
      at += n;
      if (this.#filled === this.#message.length) this.#complete();
    }
  }

  /** A message's header is in: check it and make its buffer (`available`: bytes left in the record). */
  #begin(available: number): void {
    const h = this.#header;
    const type = h[0];
    const length = (h[1] << 16) | (h[2] << 8) | h[3];
    if (type === HandshakeType.message_hash) {
      throw new TlsAlert("unexpected_message", "message_hash on the wire");
    }
    if (length > maxMessageLength(type)) {
      throw new TlsAlert(
        "illegal_parameter",
        `handshake message of type ${type} declares ${length} bytes, more than ${
          maxMessageLength(type)
        }`,
      );
    }
    if (length > available) {
      this.budget.reserve(4 + length);
      this.#charged = 4 + length;
    }
    this.#message = new Uint8Array(4 + length);
    this.#message.set(h);
    this.#filled = 4;
    this.#headerFilled = 0;
    if (length === 0) this.#complete();
  }

  #complete(): void {
    const raw = this.#message!;
    this.#message = undefined;
    this.#filled = 0;
    this.budget.release(this.#charged);
    this.#charged = 0;
    this.#ready.push({ type: raw[0], body: raw.subarray(4), raw });
    this.#readyBytes += raw.length;
  }

  take(): HandshakeMessage | undefined {
    const message = this.#ready.shift();
    if (message) this.#readyBytes -= message.raw.length;
    return message;
  }

  /** Gives back what the budget holds for an unfinished message (the connection is going). */
  discard(): void {
    this.budget.release(this.#charged);
    this.#charged = 0;
    this.#message = undefined;
    this.#filled = 0;
  }
}
/**
 * Plaintext per transport write when a write spans many records: enough to fill the socket
 * buffer in few calls, without making every record of a large write before sending the first.
 */
const WRITE_BATCH = 4 * MAX_PLAINTEXT;
/**
 * Records written after a transport write in the same turn of the event loop wait for the next
 * turn and go out together in one write, as Node's TLS sockets do: Deno's socket writes complete
 * at once, so an application answering each chunk it reads (echo, a proxy) would otherwise make
 * one system call (and one wake-up of the peer) per answer. The first write of a turn is not
 * delayed. A writer whose records make more than this many bytes pending waits for that write,
 * so a peer that does not read holds the connection's writers, not its memory: at most this and
 * one WRITE_BATCH pending, and as much again in the transport write. Answers of a few dozen bytes
 * (echo) stay far below it.
 */
export const PENDING_WRITE_LIMIT = 64 * 1024;

/**
 * How long sending an alert may wait for the writes queued before it (as Go's crypto/tls gives
 * close_notify 5 s): past it the connection is closed without waiting for the peer to read.
 */
export const ALERT_DEADLINE_MS = 5_000;

/** Resolves at the next turn of the event loop, after the I/O that is ready (Node's setImmediate). */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** How many bytes of rejected 0-RTT data a server skips before giving up (RFC 8446 §4.2.10). */
export const MAX_SKIPPED_EARLY_DATA = 64 * 1024;

/**
 * One direction's AEAD state: key, static IV and the sequence number. Records are sealed and
 * opened synchronously where the AEAD's synchronous path is its fastest (libcrypto, and every
 * provider below its `asyncFrom`), so a record costs no promise; larger ones await the AEAD.
 */
class Protection {
  seq = 0;
  /**
   * The nonce of the record being sealed or opened synchronously, rewritten for each record (no
   * allocation per record); an asynchronous operation gets a copy, since it may outlive the next.
   */
  readonly #nonce: Uint8Array;
  /** The static IV, in the nonce's allocation: it lives as long as the keys (small_bytes.ts). */
  readonly iv: Uint8Array;

  constructor(readonly suite: CipherSuite, readonly aead: Aead, iv: Uint8Array) {
    const memory = new Uint8Array(2 * iv.length);
    this.#nonce = memory.subarray(0, iv.length);
    this.iv = memory.subarray(iv.length);
    this.iv.set(iv);
  }

  static async create(suite: CipherSuite, secret: Uint8Array): Promise<Protection> {
    const { key, iv } = trafficKeys(suite, secret);
    return new Protection(suite, await getCryptoProvider().aead(suite.aead, key), iv);
  }

  /**
   * The per-record nonce (RFC 8446 §5.3), valid until the next call; advances the sequence
   * number.
   */
  nextNonce(): Uint8Array {
    if (this.seq >= Number.MAX_SAFE_INTEGER) {
      throw new TlsAlert("internal_error", "record sequence number exhausted");
    }
    const nonce = this.#nonce;
    nonce.set(this.iv);
    let seq = this.seq++;
    for (let i = nonce.length - 1; i >= nonce.length - 8 && seq > 0; i--) {
      nonce[i] ^= seq % 256;
      seq = Math.floor(seq / 256);
    }
    return nonce;
  }

  /** Whether a record of `length` bytes of inner plaintext is opened synchronously (`openInto`). */
  opensSync(length: number): boolean {
    return length < this.aead.asyncFrom;
  }

  /** Opens the next record's `body` into `out`; throws `AeadAuthError`. */
  openInto(body: Uint8Array, header: Uint8Array, out: Uint8Array): void {
    this.aead.openIntoSync(this.nextNonce(), body, header, out);
  }

  /** Opens the next record's `body` into a new array; rejects with `AeadAuthError`. */
  open(body: Uint8Array, header: Uint8Array): Promise<Uint8Array> {
    return this.aead.open(this.nextNonce().slice(), body, header);
  }

  /** Seals `parts` as the next record's body into `out` (see `Aead.sealInto`). */
  sealInto(parts: Uint8Array[], header: Uint8Array, out: Uint8Array): void | Promise<void> {
    const nonce = this.nextNonce();
    if (out.length - this.aead.tagLength >= this.aead.asyncFrom) {
      return this.aead.sealInto(nonce.slice(), parts, header, out);
    }
    this.aead.sealIntoSync(nonce, parts, header, out);
  }

  /** Frees the key at once (libcrypto's contexts) rather than when it is garbage-collected. */
  dispose(): void {
    this.aead.dispose();
  }
}

/**
 * Where protected records are opened: one buffer for the records that arrived together, made
 * when the next record does not fit what is left, so that a batch costs one allocation and the
 * application data of consecutive records is contiguous (a gathered chunk is a view, not a
 * copy). Bytes handed out are never written again, with one exception: a chunk that was lent
 * (`RecordLayer.readIncoming` with `lend`) is dead once the next read begins, and its memory is
 * opened into again rather than a new buffer made; in Deno a 64 KiB array costs about 10 µs to
 * make and zero, more than opening the records that fill it, and keeps the collector busy.
 */
class PlaintextArena {
  #buffer = NO_BYTES;
  #used = 0;
  /** The memory of the last chunk lent, held weakly: an idle connection does not keep it. */
  #lent?: WeakRef<ArrayBuffer>;
  /** What was lent before the read in progress: memory `room` may open into again. */
  #spare?: WeakRef<ArrayBuffer>;
  /** Cleared for good by the first chunk handed out to keep: it may share a lent buffer. */
  #reuse = true;

  /**
   * Room for a record's `length` bytes of inner plaintext, in another buffer of `batch` bytes
   * (at least `length`) when the current one has too little left or was detached: the spare
   * when there is one, else a new one, made large enough for any batch when it replaces a spare
   * too small (a lending reader's buffer is then made once, not once per batch size).
   */
  room(length: number, batch: number): Uint8Array {
    if (this.#buffer.length - this.#used < length) {
      const size = Math.max(length, batch);
      const spare = this.#spare?.deref();
      this.#spare = undefined;
      if (!spare || spare === this.#buffer.buffer) this.#buffer = new Uint8Array(size);
      else if (spare.byteLength >= size) this.#buffer = new Uint8Array(spare);
      else this.#buffer = new Uint8Array(Math.max(size, READ_BUFFER_MAX));
      this.#used = 0;
    }
    return this.#buffer.subarray(this.#used, this.#used + length);
  }

  /** `content`, the start of the last `room`, is handed out; what follows it is free again. */
  keep(content: Uint8Array): void {
    if (content.buffer !== this.#buffer.buffer) return;
    this.#used = content.byteOffset - this.#buffer.byteOffset + content.length;
  }

  /** `chunk` was returned by a read, `lent` or to keep (and then nothing is reused any more). */
  handOut(chunk: Uint8Array, lent: boolean): void {
    if (!lent) this.#reuse = false;
    if (this.#reuse && chunk.length) {
      this.#lent = new WeakRef(chunk.buffer as ArrayBuffer);
    } else {
      this.#lent = this.#spare = undefined;
    }
  }

  /** A lending read begins: the chunk lent before it is dead, its memory a spare. */
  reclaim(): void {
    if (!this.#lent) return;
    this.#spare = this.#lent;
    this.#lent = undefined;
  }

  /** Lets the buffer go (what was handed out of it stays valid): an idle connection holds none. */
  release(): void {
    this.#buffer = NO_BYTES;
    this.#used = 0;
  }
}

/**
 * `parts` (of `length` bytes in all) as one array: a view when they lie one after the other in
 * one buffer (records opened in the arena), else a copy.
 */
function joined(parts: Uint8Array[], length: number): Uint8Array {
  const first = parts[0];
  let end = first.byteOffset;
  for (const part of parts) {
    if (part.buffer !== first.buffer || part.byteOffset !== end) return concat(...parts);
    end += part.length;
  }
  return new Uint8Array(first.buffer, first.byteOffset, length);
}

/** A received record after unprotection: its real content type and plaintext. */
interface Record {
  type: number;
  data: Uint8Array;
}

/** What the connection reads after the handshake: application data or a handshake message. */
export type Incoming = { kind: "data"; data: Uint8Array } | {
  kind: "handshake";
  message: HandshakeMessage;
};

/**
 * The read buffer starts small and grows while the peer streams (a read that fills it suggests
 * more is waiting), up to READ_BUFFER_MAX or the record being read. A pending read pins its
 * buffer, so once nothing is buffered and the last read left room, the connection goes back to
 * a small one: an idle connection holds READ_BUFFER_IDLE bytes, not a bulk transfer's. 1 KiB
 * holds every alert and ticket; what is larger costs one more read. A connection's first read
 * gets READ_BUFFER_FIRST instead: a ClientHello with a post-quantum key share is always larger
 * than 1 KiB (1.4 KB with X25519MLKEM768 alone, about 1.9 KB with SecP384r1MLKEM1024 or a
 * browser's extensions, 3.1 KB with both shares), and in 1 KiB it took two transport reads and
 * a second buffer. Only a connection that has not spoken yet holds it, for as long as its
 * handshake deadline allows.
 */
const READ_BUFFER_IDLE = 1024;
const READ_BUFFER_FIRST = 4096;
const READ_BUFFER_MAX = 64 * 1024;

export class RecordLayer {
  #buf = new Uint8Array(READ_BUFFER_FIRST);
  /** Whether the last transport read filled the buffer (see READ_BUFFER_IDLE). */
  #lastReadFilled = false;
  #start = 0;
  #end = 0;
  #read?: Protection;
  #write?: Protection;
  readonly #handshake: HandshakeReassembly;
  readonly #plaintext = new PlaintextArena();
  /** Records handled since the last transport read (see RECORDS_PER_TURN). */
  #recordsThisTurn = 0;
  #writeChain: Promise<unknown> = Promise.resolve();
  /** Records made by `hold`, sent with the next write. */
  #held?: Uint8Array;
  /**
   * The memory of the last records written to the transport, free once the write settled and
   * held weakly: the next records are built in it when they fit (see PlaintextArena for why).
   */
  #sentMemory?: WeakRef<ArrayBuffer>;
  /**
   * Set from a transport write until the write of what was written after it, at the next turn
   * of the event loop, is done (see PENDING_WRITE_LIMIT).
   */
  #nextTurnWrite?: Promise<void>;
  /** Records written meanwhile, in order, and their length. */
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /** Why a transport write failed: every later write throws it. */
  #writeFailure?: unknown;
  #eof = false;
  /** A record (or the error reading it) that `#gatherData` read past the data it joined. */
  #readAhead?: { record: Record | null } | { error: unknown };
  /** Set by `discard`: the keys are freed and nothing is read or written any more. */
  #discarded = false;
  #bytesReceived = 0;

  /**
   * Where the handshake is, for the records that only it allows (RFC 8446 §5, D.4):
   * `hello` until the first ClientHello was sent or received (a change_cipher_spec is then an
   * unexpected record), `handshake` until the peer's Finished was read (a change_cipher_spec of
   * one byte 0x01 is dropped; a plaintext alert is the peer's alert, even after the keys
   * changed: a peer that failed our flight may not have its keys yet), then `done`.
   */
  #phase: "hello" | "handshake" | "done" = "hello";
  /** Bytes of rejected 0-RTT records still to be skipped; undefined when not skipping. */
  #earlyDataBudget?: number;
  /** Largest plaintext per record the peer accepts (RFC 8449), excluding the content type. */
  peerMaxFragment = MAX_PLAINTEXT;
  /**
   * Largest TLSInnerPlaintext (content, type and padding) accepted: 2^14 + 1 (RFC 8446 §5.4),
   * or the record_size_limit we announced once the peer took it up (RFC 8449 §4).
   */
  receiveLimit = MAX_PLAINTEXT + 1;
  /** Set once a close_notify or fatal alert was sent; nothing is written after it. */
  writeClosed = false;

  constructor(
    readonly transport: Transport,
    budget: HandshakeBufferBudget = processHandshakeBudget,
  ) {
    this.#handshake = new HandshakeReassembly(budget);
  }

  /** Bytes of handshake messages received and not yet read: inside a message when non-zero. */
  get #pendingLength(): number {
    return this.#handshake.buffered;
  }

  /**
   * Releases what the connection holds of the shared handshake buffer budget; called when the
   * transport is closed.
   */
  discard(): void {
    this.#discarded = true;
    this.#handshake.discard();
    this.#read?.dispose();
    this.#write?.dispose();
  }

  /**
   * Server side, when a ClientHello offered early_data that will not be accepted: skip the
   * client's 0-RTT records (RFC 8446 §4.2.10) until its handshake resumes. Before read keys are
   * set (after a HelloRetryRequest) that is every application_data record up to the next
   * ClientHello; after, every record that does not decrypt, up to the first that does. More than
   * MAX_SKIPPED_EARLY_DATA bytes of them is unexpected_message (RFC 8446 §4.6.1).
   */
  skipRejectedEarlyData(): void {
    this.#earlyDataBudget = MAX_SKIPPED_EARLY_DATA;
  }

  /** Skips a rejected 0-RTT record of `length` bytes, or says it is one too many. */
  #skipEarlyRecord(length: number): void {
    if (length > this.#earlyDataBudget!) {
      throw new TlsAlert(
        "unexpected_message",
        `more than ${MAX_SKIPPED_EARLY_DATA} bytes of rejected early data`,
      );
    }
    this.#earlyDataBudget! -= length;
  }

  /** The first ClientHello was sent (client) or read (server): the handshake has begun. */
  helloExchanged(): void {
    if (this.#phase === "hello") this.#phase = "handshake";
  }

  /** The peer's Finished was read: from now on only protected records are valid. */
  handshakeDone(): void {
    this.#phase = "done";
  }

  /** Records written with the current write keys (for the key usage limit). */
  get writeSequence(): number {
    return this.#write?.seq ?? 0;
  }

  /** Switches read protection to `secret`; a handshake message may not straddle the change. */
  async setReadKeys(suite: CipherSuite, secret: Uint8Array): Promise<void> {
    if (this.#pendingLength) {
      throw new TlsAlert("unexpected_message", "handshake message straddles a key change");
    }
    const previous = this.#read;
    this.#read = await Protection.create(suite, secret);
    previous?.dispose();
  }

  /** Switches write protection to `secret`, after every write already queued. */
  setWriteKeys(suite: CipherSuite, secret: Uint8Array): Promise<void> {
    return this.exclusive(() => this.setWriteKeysUnlocked(suite, secret));
  }

  /** Switches write protection now; the caller holds the write lock (see `exclusive`). */
  async setWriteKeysUnlocked(suite: CipherSuite, secret: Uint8Array): Promise<void> {
    const previous = this.#write;
    this.#write = await Protection.create(suite, secret);
    previous?.dispose();
  }

  /** Bytes read from the transport so far: none means the peer never spoke (a probe). */
  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  // ---------------------------------------------------------------- reading

  async #fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#eof) return false;
      this.#makeRoom(n);
      let got: number | null;
      try {
        got = await this.transport.read(this.#buf.subarray(this.#end));
      } catch (e) {
        throw new TransportClosed("while reading", { cause: e });
      }
      if (got === null) {
        this.#eof = true;
        return false;
      }
      this.#bytesReceived += got;
      this.#end += got;
      this.#lastReadFilled = this.#end === this.#buf.length;
      this.#recordsThisTurn = 0;
    }
    return true;
  }

  /** Room for `n` bytes from `#start`: a buffer of the right size, its pending bytes first. */
  #makeRoom(n: number): void {
    const pending = this.#end - this.#start;
    let size = this.#buf.length;
    if (pending === 0 && !this.#lastReadFilled && this.#bytesReceived) size = READ_BUFFER_IDLE;
    else if (this.#lastReadFilled) size = Math.min(READ_BUFFER_MAX, 2 * size);
    size = Math.max(size, n);
    if (size !== this.#buf.length) {
      // A new buffer rather than moving bytes in place: views handed out of the old one (records
      // being processed) stay intact.
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
    } else if (this.#buf.length - this.#start < n) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      return;
    }
    this.#start = 0;
    this.#end = pending;
  }

  /** The next record, unprotected; null at a clean end of stream between records. */
  async #readRecord(): Promise<Record | null> {
    for (;;) {
      if (this.#discarded) throw new TransportClosed("after the connection was closed");
      if (++this.#recordsThisTurn > RECORDS_PER_TURN) {
        this.#recordsThisTurn = 0;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      if (!await this.#fill(HEADER)) {
        if (this.#end > this.#start) throw new TransportClosed("in the middle of a record");
        return null;
      }
      const b = this.#buf, s = this.#start;
      const outerType = b[s];
      const length = (b[s + 3] << 8) | b[s + 4];
      if (
        outerType < ContentType.change_cipher_spec || outerType > ContentType.application_data
      ) {
        throw new TlsAlert("unexpected_message", `unknown record type ${outerType}`);
      }
      if (length > MAX_PLAINTEXT + MAX_CIPHERTEXT_EXPANSION) {
        throw new TlsAlert("record_overflow", `record of ${length} bytes`);
      }
      if (!await this.#fill(HEADER + length)) {
        throw new TransportClosed("in the middle of a record");
      }
      const header = this.#buf.subarray(this.#start, this.#start + HEADER);
      const body = this.#buf.subarray(this.#start + HEADER, this.#start + HEADER + length);
      this.#start += HEADER + length;

      if (outerType === ContentType.change_cipher_spec) {
        this.#dropChangeCipherSpec(body);
        continue;
      }
      if (!this.#read) {
        if (outerType === ContentType.application_data) {
          if (this.#earlyDataBudget === undefined) {
            throw new TlsAlert("unexpected_message", "application data before keys");
          }
          this.#skipEarlyRecord(length);
          continue;
        }
        // The second ClientHello ends the 0-RTT data sent before the HelloRetryRequest.
        this.#earlyDataBudget = undefined;
        if (length > MAX_PLAINTEXT) {
          throw new TlsAlert("record_overflow", `plaintext record of ${length} bytes`);
        }
        if (length === 0 && outerType !== ContentType.application_data) {
          throw new TlsAlert("unexpected_message", "empty handshake or alert record");
        }
        return { type: outerType, data: body };
      }
      if (outerType === ContentType.alert && this.#phase === "handshake") {
        // The peer rejected our flight before switching its keys (OpenSSL 3.0 clients do):
        // its alert, not a protocol error of ours.
        if (length > MAX_PLAINTEXT) {
          throw new TlsAlert("record_overflow", `plaintext record of ${length} bytes`);
        }
        return { type: outerType, data: body };
      }
      if (outerType !== ContentType.application_data) {
        throw new TlsAlert(
          "unexpected_message",
          `plaintext record of type ${outerType} after keys`,
        );
      }
      let inner = this.#open(header, body);
      if (inner instanceof Promise) inner = await inner;
      if (!inner) continue;
      const record = this.#innerRecord(inner);
      this.#plaintext.keep(record.data);
      // The arena was made for the records buffered with this one: the last of them is out.
      if (!this.#wholeRecordBuffered()) this.#plaintext.release();
      return record;
    }
  }

  /**
   * The inner plaintext of a protected record (in the arena, where it is opened synchronously),
   * or null for rejected 0-RTT data skipped; a promise only where the AEAD opens records of this
   * size asynchronously.
   */
  #open(header: Uint8Array, body: Uint8Array): Uint8Array | null | Promise<Uint8Array | null> {
    const read = this.#read!;
    if (body.length < read.aead.tagLength + 1) {
      throw new TlsAlert("bad_record_mac", "record shorter than its tag");
    }
    const seqBefore = read.seq;
    const rejected = (e: unknown): null => {
      if (!(e instanceof AeadAuthError)) throw e;
      if (this.#earlyDataBudget === undefined) {
        throw new TlsAlert("bad_record_mac", "record authentication failed");
      }
      // Rejected 0-RTT data: discard it without consuming a sequence number.
      read.seq = seqBefore;
      this.#skipEarlyRecord(body.length);
      return null;
    };
    const length = body.length - read.aead.tagLength;
    if (!read.opensSync(length)) return read.open(body, header).catch(rejected);
    const inner = this.#plaintext.room(length, length + this.#bufferedPlaintext());
    try {
      read.openInto(body, header, inner);
      return inner;
    } catch (e) {
      return rejected(e);
    }
  }

  /**
   * The inner plaintext bytes of the whole protected records in the read buffer (after the one
   * being opened), up to READ_BUFFER_MAX: what the arena makes room for at once.
   */
  #bufferedPlaintext(): number {
    const b = this.#buf, tag = this.#read!.aead.tagLength;
    let total = 0;
    for (let at = this.#start; total < READ_BUFFER_MAX && this.#end - at >= HEADER;) {
      const length = (b[at + 3] << 8) | b[at + 4];
      if (this.#end - at < HEADER + length) break;
      if (b[at] === ContentType.application_data) total += Math.max(0, length - tag);
      at += HEADER + length;
    }
    return Math.min(total, READ_BUFFER_MAX);
  }

  /** The real content type and content of a decrypted TLSInnerPlaintext (RFC 8446 §5.4). */
  #innerRecord(inner: Uint8Array): Record {
    this.#earlyDataBudget = undefined;
    if (inner.length > this.receiveLimit) {
      throw new TlsAlert(
        "record_overflow",
        `inner plaintext of ${inner.length} bytes, over ${this.receiveLimit}`,
      );
    }
    let end = inner.length - 1;
    while (end >= 0 && inner[end] === 0) end--;
    if (end < 0) throw new TlsAlert("unexpected_message", "record without a content type");
    const type = inner[end];
    if (type === ContentType.change_cipher_spec) {
      throw new TlsAlert("unexpected_message", "encrypted change_cipher_spec");
    }
    if (
      type !== ContentType.alert && type !== ContentType.handshake &&
      type !== ContentType.application_data
    ) {
      throw new TlsAlert("unexpected_message", `protected record of inner type ${type}`);
    }
    if (end === 0 && type !== ContentType.application_data) {
      throw new TlsAlert("unexpected_message", "empty handshake or alert record");
    }
    return { type, data: inner.subarray(0, end) };
  }

  /**
   * A change_cipher_spec record (RFC 8446 §5): dropped when it is the single byte 0x01 between
   * the first ClientHello and the peer's Finished, outside a handshake message (handshake
   * messages are never interleaved with other records, §5.1); unexpected_message otherwise.
   */
  #dropChangeCipherSpec(body: Uint8Array): void {
    if (this.#phase !== "handshake") {
      throw new TlsAlert(
        "unexpected_message",
        `change_cipher_spec ${
          this.#phase === "hello" ? "before the ClientHello" : "after Finished"
        }`,
      );
    }
    if (body.length !== 1 || body[0] !== 1) {
      throw new TlsAlert("unexpected_message", "change_cipher_spec other than the byte 0x01");
    }
    if (this.#pendingLength) {
      throw new TlsAlert("unexpected_message", "change_cipher_spec inside a handshake message");
    }
  }

  /** Handles an alert record: true for close_notify, false for user_canceled, else throws. */
  #isCloseNotify(data: Uint8Array): boolean {
    if (data.length !== 2) throw new TlsAlert("decode_error", "malformed alert");
    const description = data[1];
    if (description === ALERTS.close_notify) return true;
    if (description === ALERTS.user_canceled) return false;
    throw new PeerAlert(alertName(description));
  }

  /**
   * The next application-data chunk or complete handshake message; null at the peer's
   * close_notify. Throws TlsAlert for bad input, PeerAlert for a received fatal alert, and
   * TransportClosed for an end of stream without close_notify. A chunk is the caller's to keep,
   * or with `lend` only until the next call, which may open later records over it.
   */
  async readIncoming(lend = false): Promise<Incoming | null> {
    if (lend) this.#plaintext.reclaim();
    for (;;) {
      const message = this.#handshake.take();
      if (message) return { kind: "handshake", message };
      const record = await this.#nextRecord();
      // An end of stream without close_notify could be a truncation attack (RFC 8446 §6.1).
      if (!record) throw new TransportClosed("without close_notify");
      if (record.type === ContentType.alert) {
        if (this.#pendingLength) {
          throw new TlsAlert("unexpected_message", "alert inside a handshake message");
        }
        if (this.#isCloseNotify(record.data)) return null;
        continue;
      }
      if (record.type === ContentType.application_data) {
        if (this.#pendingLength) {
          throw new TlsAlert("unexpected_message", "application data inside a handshake message");
        }
        const data = await this.#gatherData(record.data);
        this.#plaintext.handOut(data, lend);
        return { kind: "data", data };
      }
      this.#handshake.push(record.data);
    }
  }

  /** The record read ahead by `#gatherData`, else the next one from the buffer or transport. */
  #nextRecord(): Promise<Record | null> {
    const ahead = this.#readAhead;
    if (!ahead) return this.#readRecord();
    this.#readAhead = undefined;
    return "error" in ahead ? Promise.reject(ahead.error) : Promise.resolve(ahead.record);
  }

  /**
   * `first` joined with the application data of the records after it that are already whole in
   * the read buffer, up to READ_BUFFER_MAX bytes: the application then gets what one transport
   * read brought in one chunk, not a chunk (and, for echo or proxy, a write) per record. The
   * first record that is not application data, or what reading it threw, is kept for the next
   * read, so nothing is reordered and data already authenticated is delivered before an error.
   * Only after the handshake: then a buffered record is returned or refused without waiting on
   * the transport.
   */
  async #gatherData(first: Uint8Array): Promise<Uint8Array> {
    if (this.#phase !== "done") return first;
    const parts = [first];
    let length = first.length;
    while (length < READ_BUFFER_MAX && this.#wholeRecordBuffered()) {
      let record: Record | null;
      try {
        record = await this.#readRecord();
      } catch (error) {
        this.#readAhead = { error };
        break;
      }
      if (record?.type !== ContentType.application_data) {
        this.#readAhead = { record };
        break;
      }
      parts.push(record.data);
      length += record.data.length;
    }
    return joined(parts, length);
  }

  /** Whether the read buffer holds a whole record, header and body. */
  #wholeRecordBuffered(): boolean {
    const available = this.#end - this.#start;
    if (available < HEADER) return false;
    const b = this.#buf, s = this.#start;
    return available >= HEADER + ((b[s + 3] << 8) | b[s + 4]);
  }

  /** The next handshake message; anything else here is unexpected_message. */
  async readHandshake(): Promise<HandshakeMessage> {
    const incoming = await this.readIncoming();
    if (!incoming) throw new TransportClosed("during the handshake");
    if (incoming.kind !== "handshake") {
      throw new TlsAlert("unexpected_message", "application data during the handshake");
    }
    return incoming.message;
  }

  // ---------------------------------------------------------------- writing

  /** Runs `work` with the write side to itself (records leave in order). */
  exclusive<T>(work: () => T | Promise<T>): Promise<T> {
    const run = this.#writeChain.then(work);
    this.#writeChain = run.catch(() => {});
    return run;
  }

  /** Writes `data` as records of `type`, fragmented to the peer's limit. Caller holds the lock. */
  async writeUnlocked(type: number, data: Uint8Array): Promise<void> {
    this.#checkWritable();
    const max = this.#maxFragment();
    const batch = max * Math.max(1, Math.floor(WRITE_BATCH / max));
    let at = 0;
    do {
      const piece = data.subarray(at, at + batch);
      at += piece.length;
      let records = this.#encode(type, piece, max);
      if (records instanceof Promise) records = await records;
      await this.#writeAll(records);
    } while (at < data.length);
  }

  /** Writes records of `type` in order with other writers. */
  write(type: number, data: Uint8Array): Promise<void> {
    return this.exclusive(() => this.writeUnlocked(type, data));
  }

  /**
   * Makes the records of `data` now, with the current keys, but sends them with the next write:
   * a server's ServerHello then leaves in one segment with its encrypted flight.
   */
  hold(type: number, data: Uint8Array): Promise<void> {
    return this.exclusive(async () => {
      this.#checkWritable();
      const records = await this.#encode(type, data, this.#maxFragment());
      this.#held = this.#held ? concat(this.#held, records) : records;
    });
  }

  /** Sends what `hold` made, now. */
  flush(): Promise<void> {
    return this.exclusive(async () => {
      if (this.#held && !this.#discarded) await this.#writeAll(NO_BYTES);
    });
  }

  /**
   * Makes the records of `data` now and sends them with the next write of this turn of the event
   * loop, or at the next turn if none comes: a server's NewSessionTicket then leaves with the
   * application's answer to the data that came with the client's Finished, in one transport
   * write instead of two. A failure to send is kept for every later writer.
   */
  async writeByNextTurn(type: number, data: Uint8Array): Promise<void> {
    await this.hold(type, data);
    nextTurn().then(() => this.flush()).catch((e) => {
      this.#writeFailure ??= e;
    });
  }

  #checkWritable(): void {
    if (this.#discarded) throw new TransportClosed("after the connection was closed");
    if (this.writeClosed) throw new TransportClosed("for writing (close_notify or alert sent)");
  }

  /** Largest plaintext per record: the peer's limit once records are protected. */
  #maxFragment(): number {
    return this.#write ? this.peerMaxFragment : MAX_PLAINTEXT;
  }

  /**
   * `data` as records of at most `max` plaintext bytes each, built in one buffer: each record's
   * header, then its body sealed straight into place behind it (no inner plaintext assembled,
   * no record copied into the write). A promise only where some record is sealed asynchronously.
   */
  #encode(type: number, data: Uint8Array, max: number): Uint8Array | Promise<Uint8Array> {
    const write = this.#write;
    // A protected record adds its real content type and the AEAD tag to the plaintext.
    const expansion = write ? 1 + write.aead.tagLength : 0;
    const count = Math.max(1, Math.ceil(data.length / max));
    const out = this.#recordMemory(data.length + count * (HEADER + expansion));
    const contentType = INNER_CONTENT_TYPES.get(type) ?? Uint8Array.of(type);
    const sealing: Promise<void>[] = [];
    for (let at = 0, offset = 0; offset < out.length;) {
      const piece = data.subarray(at, at + max);
      at += piece.length;
      const length = piece.length + expansion;
      const header = out.subarray(offset, offset + HEADER);
      header[0] = write ? ContentType.application_data : type;
      header[1] = TLS12 >>> 8;
      header[2] = TLS12 & 0xff;
      header[3] = length >>> 8;
      header[4] = length & 0xff;
      const body = out.subarray(offset + HEADER, offset + HEADER + length);
      if (write) {
        const sealed = write.sealInto([piece, contentType], header, body);
        if (sealed) sealing.push(sealed);
      } else {
        body.set(piece);
      }
      offset += HEADER + length;
    }
    return sealing.length ? Promise.all(sealing).then(() => out) : out;
  }

  /** `size` bytes to build records in: the last records' memory when it is free and fits. */
  #recordMemory(size: number): Uint8Array {
    const free = this.#sentMemory?.deref();
    this.#sentMemory = undefined;
    return free && free.byteLength >= size ? new Uint8Array(free, 0, size) : new Uint8Array(size);
  }

  /**
   * Sends `records` (after what `hold` made): at once when no transport write was made in this
   * turn of the event loop, else joined to the bytes that go out in one write at the next turn
   * (see PENDING_WRITE_LIMIT). Caller holds the lock.
   */
  async #writeAll(records: Uint8Array): Promise<void> {
    const bytes = this.#held ? concat(this.#held, records) : records;
    this.#held = undefined;
    this.#throwIfWriteFailed();
    if (this.#nextTurnWrite) {
      this.#pending.push(bytes);
      this.#pendingBytes += bytes.length;
      if (this.#pendingBytes > PENDING_WRITE_LIMIT) await this.#drain();
      return;
    }
    const sent = this.#send(bytes);
    this.#nextTurnWrite = this.#sendPendingAfter(sent);
    await sent;
  }

  /**
   * Writes all of `bytes` (records made here, referenced nowhere else) to the transport; their
   * memory is then free for the next records.
   */
  async #send(bytes: Uint8Array): Promise<void> {
    try {
      let at = 0;
      while (at < bytes.length) at += await this.transport.write(bytes.subarray(at));
    } catch (e) {
      throw new TransportClosed("while writing", { cause: e });
    }
    this.#sentMemory = new WeakRef(bytes.buffer as ArrayBuffer);
  }

  /**
   * Once `sent` is done, at the next turn, sends what was written meanwhile, one transport write
   * per batch, until nothing is pending; a failure (of `sent` too) is kept for every later writer.
   * Nothing is sent once the connection is discarded.
   */
  async #sendPendingAfter(sent: Promise<void>): Promise<void> {
    try {
      await sent;
      await nextTurn();
      while (this.#pendingBytes && !this.#discarded) {
        const bytes = this.#pending.length === 1 ? this.#pending[0] : concat(...this.#pending);
        this.#pending = [];
        this.#pendingBytes = 0;
        await this.#send(bytes);
      }
    } catch (e) {
      this.#writeFailure = e;
    } finally {
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#nextTurnWrite = undefined;
    }
  }

  /** Waits until every byte written was handed to the transport; throws if that failed. */
  async #drain(): Promise<void> {
    while (this.#nextTurnWrite) await this.#nextTurnWrite;
    this.#throwIfWriteFailed();
  }

  #throwIfWriteFailed(): void {
    if (this.#writeFailure) throw this.#writeFailure;
  }

  /** Bytes written and not yet handed to the transport (see PENDING_WRITE_LIMIT). */
  get pendingWriteBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Sends an alert (fatal unless close_notify/user_canceled) and marks the write side closed.
   * Never throws: the connection is going away anyway. Waits at most ALERT_DEADLINE_MS: the alert
   * queues behind the writes before it, and a write to a peer that stopped reading never ends,
   * so a close or a fatal error would otherwise keep the connection forever. An alert not out by
   * then still goes out after those writes unless the transport is closed first (what close and
   * fatal errors do next, failing the stuck write too).
   */
  async sendAlert(alert: AlertName): Promise<void> {
    using deadline = delay(ALERT_DEADLINE_MS, undefined);
    await Promise.race([this.#sendAlertInOrder(alert), deadline]);
  }

  #sendAlertInOrder(alert: AlertName): Promise<void> {
    return this.exclusive(async () => {
      if (this.writeClosed) return;
      const level = alert === "close_notify" || alert === "user_canceled" ? 1 : 2;
      try {
        await this.writeUnlocked(ContentType.alert, new Uint8Array([level, ALERTS[alert]]));
        // The alert and everything before it are out before the caller closes the transport.
        await this.#drain();
      } catch {
        // The peer may already be gone; the alert was best effort.
      } finally {
        this.writeClosed = true;
      }
    }).catch(() => {});
  }
}
