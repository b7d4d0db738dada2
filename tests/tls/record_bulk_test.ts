/**
 * The record layer's bulk path over a real loopback socket, with every provider (libcrypto opens
 * in place, the others by copy).
 *
 * Reading: records that arrive together reach the reader in fewer chunks than records (they are
 * opened into one buffer and handed out as one view), every chunk keeps its bytes however much
 * is read after it, and a record that fails to authenticate after good ones in the same read
 * ends the connection only after their data was delivered; a lent chunk's memory is opened into
 * again by a later read, and a chunk read to keep is never written over.
 *
 * Writing: what is written after a transport write in the same turn of the event loop goes out
 * in one transport write at the next turn, in order; what is written "by the next turn" leaves
 * with the next write of the turn, or alone at the next; a writer waits once more than
 * PENDING_WRITE_LIMIT bytes are pending; an alert goes out after everything pending, before the
 * transport may be closed; a failed transport write fails every later write; and records are
 * built in the memory of the last ones written once that write settled, never before.
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { TlsAlert, TransportClosed } from "../../src/tls/alert.ts";
import { suiteById } from "../../src/tls/cipher_suites.ts";
import { ContentType, MAX_PLAINTEXT } from "../../src/tls/codec/constants.ts";
import { PENDING_WRITE_LIMIT, RecordLayer, type Transport } from "../../src/tls/record.ts";
import { withCryptoSelection } from "../support/env.ts";

const SUITE = suiteById(0x1302)!; // TLS_AES_256_GCM_SHA384
const SECRET = new Uint8Array(SUITE.hashLength).fill(7);

/**
 * A connection's transport that counts its writes, can flip the last byte (a record's tag) of
 * its next write, hold its writes until released (a peer that does not read), or fail them.
 */
class ScriptedTransport implements Transport {
  writes = 0;
  /** The memory of each write, in order. */
  readonly written: ArrayBufferLike[] = [];
  corruptNextWrite = false;
  failWrites = false;
  #held?: PromiseWithResolvers<void>;
  constructor(readonly conn: Deno.Conn) {}
  read(p: Uint8Array): Promise<number | null> {
    return this.conn.read(p);
  }
  async write(p: Uint8Array): Promise<number> {
    this.writes++;
    this.written.push(p.buffer);
    if (this.failWrites) throw new Deno.errors.BrokenPipe("scripted failure");
    if (this.#held) await this.#held.promise;
    if (!this.corruptNextWrite) return this.conn.write(p);
    this.corruptNextWrite = false;
    const copy = p.slice();
    copy[copy.length - 1] ^= 1;
    return this.conn.write(copy);
  }
  holdWrites(): void {
    this.#held = Promise.withResolvers();
  }
  releaseWrites(): void {
    this.#held?.resolve();
    this.#held = undefined;
  }
  close(): void {
    this.conn.close();
  }
}

/** Two record layers over loopback TCP, keyed alike and past the handshake. */
async function keyedPair(): Promise<[RecordLayer, ScriptedTransport, RecordLayer]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  const transport = new ScriptedTransport(client);
  const writer = new RecordLayer(transport);
  const reader = new RecordLayer(server);
  for (const layer of [writer, reader]) {
    layer.helloExchanged();
    layer.handshakeDone();
  }
  await writer.setWriteKeys(SUITE, SECRET);
  await reader.setReadKeys(SUITE, SECRET);
  return [writer, transport, reader];
}

function closeBoth(...layers: RecordLayer[]): void {
  for (const layer of layers) {
    layer.discard();
    layer.transport.close();
  }
}

/** `length` bytes counting up from `start`, modulo 251, so any misplaced byte shows. */
function pattern(start: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (start + i) % 251);
}

/** Reads application data until `length` bytes came; returns the chunks as handed out. */
async function readChunks(reader: RecordLayer, length: number): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for (let got = 0; got < length;) {
    const incoming = await reader.readIncoming();
    if (incoming?.kind !== "data") throw new Error(`expected data, got ${incoming?.kind}`);
    chunks.push(incoming.data);
    got += incoming.data.length;
  }
  equal(chunks.reduce((n, c) => n + c.length, 0), length);
  return chunks;
}

const concatenated = (chunks: Uint8Array[]) => new Uint8Array(chunks.flatMap((c) => [...c]));

/** Writes the pattern on from where the last call stopped; `sent` is how far it got. */
function patternWriter(writer: RecordLayer) {
  return {
    sent: 0,
    write(length: number): Promise<void> {
      const data = pattern(this.sent, length);
      this.sent += length;
      return writer.write(ContentType.application_data, data);
    },
  };
}

/** Waits (a bounded number of turns) until the writer's pending records went out. */
async function drained(writer: RecordLayer): Promise<void> {
  for (let turns = 0; turns < 100 && writer.pendingWriteBytes; turns++) await nextTurn();
}

for (const selection of ["libcrypto", "native", "noble"]) {
  Deno.test(`record layer (${selection}): records that arrived together come as one chunk, and chunks keep their bytes`, () =>
    withCryptoSelection(selection, async () => {
      const [writer, , reader] = await keyedPair();
      try {
        const bursts = 4;
        const burst = 12 * MAX_PLAINTEXT;
        const held: Uint8Array[][] = [];
        for (let i = 0; i < bursts; i++) {
          // The whole burst is in the reader's socket before it reads (loopback).
          await writer.write(ContentType.application_data, pattern(i * burst, burst));
          await drained(writer);
          held.push(await readChunks(reader, burst));
        }
        // Once the read buffer has grown, one chunk carries several records.
        ok(held[bursts - 1].length < 12, `${held[bursts - 1].length} chunks for 12 records`);
        // Every chunk handed out still holds what was sent, after everything read since.
        for (let i = 0; i < bursts; i++) {
          deepEqual(concatenated(held[i]), pattern(i * burst, burst), `burst ${i}`);
        }
      } finally {
        closeBoth(writer, reader);
      }
    }));

  Deno.test(`record layer (${selection}): a forged record after good ones in one read is refused after their data`, () =>
    withCryptoSelection(selection, async () => {
      const [writer, transport, reader] = await keyedPair();
      try {
        // Three records in one transport write; the last one's tag is flipped on the wire.
        transport.corruptNextWrite = true;
        await writer.write(ContentType.application_data, pattern(0, 3 * MAX_PLAINTEXT));
        const chunks = await readChunks(reader, 2 * MAX_PLAINTEXT);
        deepEqual(concatenated(chunks), pattern(0, 2 * MAX_PLAINTEXT));
        await rejects(
          reader.readIncoming(),
          (e) => e instanceof TlsAlert && e.alert === "bad_record_mac",
        );
      } finally {
        closeBoth(writer, reader);
      }
    }));
}

Deno.test("record layer: a lent chunk's memory takes a later read's records, a kept chunk's never", () =>
  withCryptoSelection("libcrypto", async () => {
    const [writer, , reader] = await keyedPair();
    try {
      const out = patternWriter(writer);
      const send = async (length: number) => {
        await out.write(length);
        await drained(writer);
      };
      const seen = new Set<ArrayBufferLike>();
      let reused = false;
      /** Reads `length` bytes in lent chunks, each copied before the next read, as a pipe does. */
      const readLent = async (length: number): Promise<Uint8Array> => {
        const copies: Uint8Array[] = [];
        for (let got = 0; got < length;) {
          const incoming = await reader.readIncoming(true);
          if (incoming?.kind !== "data") throw new Error(`expected data, got ${incoming?.kind}`);
          if (seen.has(incoming.data.buffer)) reused = true;
          seen.add(incoming.data.buffer);
          copies.push(incoming.data.slice());
          got += incoming.data.length;
        }
        return concatenated(copies);
      };
      const burst = 3 * MAX_PLAINTEXT;
      for (let i = 0; i < 6; i++) {
        const start = out.sent;
        await send(burst);
        deepEqual(await readLent(burst), pattern(start, burst), `lent burst ${i}`);
      }
      ok(reused, "a read opened its records into the memory of a chunk lent before");

      // A chunk read to keep holds its bytes through the lent reads after it, small ones too
      // (their records would fit in its memory).
      const keptStart = out.sent;
      await send(burst);
      const kept = await readChunks(reader, burst);
      for (const length of [1000, 1000, burst, 1000]) {
        const start = out.sent;
        await send(length);
        deepEqual(await readLent(length), pattern(start, length), `lent after the kept burst`);
      }
      deepEqual(concatenated(kept), pattern(keptStart, burst), "the kept chunks");
    } finally {
      closeBoth(writer, reader);
    }
  }));

/** Resolves at the next turn of the event loop. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

Deno.test("record layer: writes after a transport write in the same turn go out together at the next", async () => {
  const [writer, transport, reader] = await keyedPair();
  try {
    for (let i = 0; i < 10; i++) {
      await writer.write(ContentType.application_data, pattern(100 * i, 100));
    }
    // The first write went out at once; the nine after it wait for the next turn.
    equal(transport.writes, 1);
    equal(writer.pendingWriteBytes, 9 * (5 + 100 + 1 + 16));
    const chunks = await readChunks(reader, 1000);
    equal(transport.writes, 2);
    equal(writer.pendingWriteBytes, 0);
    deepEqual(concatenated(chunks), pattern(0, 1000));
  } finally {
    closeBoth(writer, reader);
  }
});

Deno.test("record layer: what is written by the next turn leaves with the next write, or at the next turn alone", async () => {
  const [writer, transport, reader] = await keyedPair();
  try {
    // As a server's NewSessionTicket, then the answer to data that came with the Finished.
    await writer.writeByNextTurn(ContentType.application_data, pattern(0, 100));
    equal(transport.writes, 0, "held until the next write");
    await writer.write(ContentType.application_data, pattern(100, 100));
    equal(transport.writes, 1, "one transport write for both");
    deepEqual(concatenated(await readChunks(reader, 200)), pattern(0, 200));
    await nextTurn();
    equal(transport.writes, 1, "nothing was left to send at the next turn");

    // With nothing written after it, it goes out at the next turn by itself.
    await writer.writeByNextTurn(ContentType.application_data, pattern(200, 100));
    equal(transport.writes, 1);
    deepEqual(concatenated(await readChunks(reader, 100)), pattern(200, 100));
    equal(transport.writes, 2);
  } finally {
    closeBoth(writer, reader);
  }
});

Deno.test("record layer: records are built in the memory of the last ones written, once that write settled", async () => {
  const [writer, transport, reader] = await keyedPair();
  try {
    const out = patternWriter(writer);
    for (let i = 0; i < 4; i++) {
      await out.write(20_000);
      await nextTurn();
    }
    const reusedAt = transport.written.findIndex((b, i) => transport.written.indexOf(b) < i);
    ok(reusedAt > 0, "a write went out of the memory of an earlier one");

    // While a write is in flight (the peer does not read), the records written meanwhile get
    // memory of their own: building them in the memory being written would change the bytes on
    // the wire. Here the in-flight write is the next turn's, of what was written after the first.
    for (let i = 0; i < 3; i++) await nextTurn();
    await out.write(20_000);
    await out.write(20_000);
    transport.holdWrites();
    const writesBefore = transport.writes;
    await nextTurn();
    equal(transport.writes, writesBefore + 1, "the next turn's write is in flight");
    const meanwhile = out.write(20_000);
    await nextTurn();
    transport.releaseWrites();
    await meanwhile;
    deepEqual(concatenated(await readChunks(reader, out.sent)), pattern(0, out.sent));
  } finally {
    closeBoth(writer, reader);
  }
});

Deno.test("record layer: a writer waits once more than PENDING_WRITE_LIMIT bytes are pending", async () => {
  const [writer, transport, reader] = await keyedPair();
  try {
    const out = patternWriter(writer);
    await out.write(10);
    // The peer stops reading: the next turn's transport write does not complete.
    transport.holdWrites();
    await out.write(10);
    await nextTurn();
    equal(writer.pendingWriteBytes, 0, "the held write took what was pending");
    let waiting: Promise<void> | undefined;
    let settled = false;
    for (let i = 0; i < 100 && !waiting; i++) {
      const write = out.write(MAX_PLAINTEXT);
      write.then(() => settled = true, () => settled = true);
      await nextTurn();
      if (!settled) waiting = write;
      settled = false;
    }
    ok(waiting, "some write waits");
    ok(writer.pendingWriteBytes > PENDING_WRITE_LIMIT);
    ok(writer.pendingWriteBytes <= PENDING_WRITE_LIMIT + MAX_PLAINTEXT + 22);
    await nextTurn();
    equal(settled, false, "it still waits while the peer does not read");
    transport.releaseWrites();
    const chunks = await readChunks(reader, out.sent);
    await waiting;
    deepEqual(concatenated(chunks), pattern(0, out.sent));
  } finally {
    closeBoth(writer, reader);
  }
});

Deno.test("record layer: an alert goes out after everything pending, before the transport closes", async () => {
  const [writer, , reader] = await keyedPair();
  try {
    await writer.write(ContentType.application_data, pattern(0, 100));
    await writer.write(ContentType.application_data, pattern(100, 100));
    await writer.write(ContentType.application_data, pattern(200, 100));
    await writer.sendAlert("close_notify");
    // As TlsConnection.close does: the transport is closed as soon as the alert is sent.
    writer.discard();
    writer.transport.close();
    deepEqual(concatenated(await readChunks(reader, 300)), pattern(0, 300));
    equal(await reader.readIncoming(), null, "close_notify came after the data");
  } finally {
    reader.discard();
    reader.transport.close();
  }
});

Deno.test("record layer: a transport write of pending records that fails fails every later write", async () => {
  const [writer, transport, reader] = await keyedPair();
  try {
    await writer.write(ContentType.application_data, pattern(0, 10));
    transport.failWrites = true;
    await writer.write(ContentType.application_data, pattern(10, 10));
    let failure: unknown;
    for (let i = 0; i < 100 && !failure; i++) {
      await nextTurn();
      await writer.write(ContentType.application_data, pattern(20, 10)).catch((e) => failure = e);
    }
    ok(failure instanceof TransportClosed, String(failure));
    await rejects(writer.write(ContentType.application_data, pattern(30, 10)), TransportClosed);
  } finally {
    closeBoth(writer, reader);
  }
});
