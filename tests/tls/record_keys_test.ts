/**
 * The record layer's traffic keys over a real loopback socket: a key change frees the key it
 * replaces at once, closing frees the current ones, and a connection whose keys are freed
 * refuses to read or write with TransportClosed (never a TypeError from a spent key). Runs with
 * every provider, since each has its own AEAD (libcrypto's hold EVP contexts outside the heap).
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { type Aead, getCryptoProvider } from "../../src/crypto/index.ts";
import { TransportClosed } from "../../src/tls/alert.ts";
import { suiteById } from "../../src/tls/cipher_suites.ts";
import { ContentType } from "../../src/tls/codec/constants.ts";
import { RecordLayer } from "../../src/tls/record.ts";
import { withCryptoSelection } from "../support/env.ts";

/** Every AEAD the provider makes while `work` runs, and whether each was disposed. */
async function trackAeads(
  work: (made: { aead: Aead; disposed: boolean }[]) => Promise<void>,
): Promise<void> {
  const provider = getCryptoProvider();
  const original = provider.aead;
  const made: { aead: Aead; disposed: boolean }[] = [];
  provider.aead = async (alg, key) => {
    const aead = await original.call(provider, alg, key);
    const entry = { aead, disposed: false };
    const dispose = aead.dispose.bind(aead);
    aead.dispose = () => {
      entry.disposed = true;
      dispose();
    };
    made.push(entry);
    return aead;
  };
  try {
    await work(made);
  } finally {
    provider.aead = original;
  }
}

async function connectedPair(): Promise<[RecordLayer, RecordLayer]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return [new RecordLayer(client), new RecordLayer(server)];
}

const SUITE = suiteById(0x1302)!; // TLS_AES_256_GCM_SHA384
const secret = (fill: number) => new Uint8Array(SUITE.hashLength).fill(fill);

for (const selection of ["libcrypto", "native", "noble"]) {
  Deno.test(`record layer (${selection}): replaced and closed traffic keys are freed at once`, () =>
    withCryptoSelection(selection, () =>
      trackAeads(async (made) => {
        const [writer, reader] = await connectedPair();
        try {
          writer.helloExchanged();
          reader.helloExchanged();
          writer.handshakeDone();
          reader.handshakeDone();
          await writer.setWriteKeys(SUITE, secret(1));
          await reader.setReadKeys(SUITE, secret(1));
          equal(made.length, 2);
          await writer.write(ContentType.application_data, Uint8Array.of(1, 2, 3));
          const first = await reader.readIncoming();
          deepEqual(first, { kind: "data", data: Uint8Array.of(1, 2, 3) });

          // A key change (as a KeyUpdate makes) frees the replaced keys before any record.
          await writer.setWriteKeys(SUITE, secret(2));
          await reader.setReadKeys(SUITE, secret(2));
          deepEqual(made.map((m) => m.disposed), [true, true, false, false]);
          await writer.write(ContentType.application_data, Uint8Array.of(4));
          deepEqual(await reader.readIncoming(), { kind: "data", data: Uint8Array.of(4) });

          writer.discard();
          reader.discard();
          ok(made.every((m) => m.disposed), "closing frees the current keys");
          await rejects(
            writer.write(ContentType.application_data, Uint8Array.of(5)),
            TransportClosed,
          );
          await rejects(reader.readIncoming(), TransportClosed);
        } finally {
          writer.transport.close();
          reader.transport.close();
        }
      })));
}
