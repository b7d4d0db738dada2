/**
 * Records that arrive together, over a real loopback socket: their application data reaches the
 * reader in fewer chunks than records (they are opened into one buffer and handed out as one
 * view), every chunk keeps its bytes however much is read after it, and a record that fails to
 * authenticate after good ones in the same read ends the connection only after their data was
 * delivered. Runs with every provider: libcrypto opens in place, the others by copy.
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { TlsAlert } from "../../src/tls/alert.ts";
import { suiteById } from "../../src/tls/cipher_suites.ts";
import { ContentType, MAX_PLAINTEXT } from "../../src/tls/codec/constants.ts";
import { RecordLayer, type Transport } from "../../src/tls/record.ts";
import { withCryptoSelection } from "../support/env.ts";

const SUITE = suiteById(0x1302)!; // TLS_AES_256_GCM_SHA384
const SECRET = new Uint8Array(SUITE.hashLength).fill(7);

/** A connection's transport that can flip the last byte (a record's tag) of its next write. */
class TamperingTransport implements Transport {
  corruptNextWrite = false;
  constructor(readonly conn: Deno.Conn) {}
  read(p: Uint8Array): Promise<number | null> {
    return this.conn.read(p);
  }
  write(p: Uint8Array): Promise<number> {
    if (!this.corruptNextWrite) return this.conn.write(p);
    this.corruptNextWrite = false;
    const copy = p.slice();
    copy[copy.length - 1] ^= 1;
    return this.conn.write(copy);
  }
  close(): void {
    this.conn.close();
  }
}

/** Two record layers over loopback TCP, keyed alike and past the handshake. */
async function keyedPair(): Promise<[RecordLayer, TamperingTransport, RecordLayer]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  const transport = new TamperingTransport(client);
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
