/**
 * What a connection keeps of its peer's chain for as long as it lives: each certificate on its
 * own, never a view into the whole Certificate message it came in (11 KB for an ML-DSA-65 leaf
 * and intermediate), and the same bytes for every connection a cached verdict serves.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import type { HandshakeInfo } from "../../src/tls/config.ts";
import { tempDir } from "../support/env.ts";
import { makePki, mutualTlsClient, mutualTlsServer } from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

/** Whether every certificate of `info`'s peer chain owns exactly its own bytes. */
function heldAlone(info: HandshakeInfo): boolean {
  return info.peerCertificates.every((der) =>
    der.byteOffset === 0 && der.buffer.byteLength === der.length
  );
}

Deno.test("both sides keep the peer's certificates, not the Certificate message", async () => {
  await using dir = await tempDir();
  const pki = await makePki(dir.path, "mldsa65");
  await using server = new EchoServer(mutualTlsServer(pki));
  const client = mutualTlsClient(pki);
  const payload = Uint8Array.of(1, 2, 3);
  const first = await qsignEcho(server.port, client, payload);
  const second = await qsignEcho(server.port, client, payload);
  const outcomes = await server.waitFor(2);
  const served = outcomes.map((o) => {
    ok("info" in o, String("error" in o && o.error));
    return o.info;
  });

  for (const info of [first.info, second.info, ...served]) {
    equal(info.peerCertificates.length, 2, "leaf and intermediate, as sent");
    ok(heldAlone(info), "each certificate is its own buffer");
  }
  deepEqual(served[0].peerCertificates, pki.client.chain);
  deepEqual(first.info.peerCertificates, pki.server.chain);
  // The second connection's verdict came from the cache: the same copies, not new ones.
  ok(served[0].peerCertificates.every((der, i) => der === served[1].peerCertificates[i]));
});
