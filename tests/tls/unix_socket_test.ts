/**
 * The engine over a Unix socket: acceptTls/connectTls set TCP_NODELAY only on TCP connections
 * and run over any other Deno.Conn as they are.
 */
import { deepEqual, equal } from "node:assert/strict";
import { acceptTls, connectTls } from "../../src/tls/conn.ts";
import { tempDir } from "../support/env.ts";
import { makePki, mutualTlsClient, mutualTlsServer } from "./support/pki.ts";
import { readExactly } from "./support/qsign.ts";

Deno.test("a mutual-TLS handshake and echo over a Unix socket", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "mldsa44");
  const path = `${dir.path}/qsign.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const serving = (async () => {
    const tls = await acceptTls(await listener.accept(), mutualTlsServer(pki));
    await tls.readable.pipeTo(tls.writable);
    await tls.close();
    return tls.info;
  })();
  try {
    const tls = await connectTls(
      await Deno.connect({ transport: "unix", path }),
      mutualTlsClient(pki),
    );
    const payload = crypto.getRandomValues(new Uint8Array(40_000));
    const writer = tls.writable.getWriter();
    const [echo] = await Promise.all([
      readExactly(tls.readable, payload.length),
      writer.write(payload),
    ]);
    deepEqual(echo, payload);
    await writer.close();
    await tls.close();
    const serverInfo = await serving;
    equal(serverInfo.peerSignatureScheme, "mldsa44");
  } finally {
    listener.close();
  }
});
