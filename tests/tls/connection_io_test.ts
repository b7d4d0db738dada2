/**
 * TlsConnection's own I/O over a real loopback socket, qsign on both ends: read/write/closeWrite
 * carry data and half-closes without web streams, one read is pending at a time, the streams
 * are made on first use (and are the same afterwards), a peer's protocol error reaches
 * `read` as a TlsError with the alert, and a post-quantum ClientHello takes one transport read.
 */
import { equal, ok, rejects } from "node:assert/strict";
import { TlsError } from "../../src/tls/alert.ts";
import { acceptTls, connectTls, type TlsConnection } from "../../src/tls/conn.ts";
import { tempDir } from "../support/env.ts";
import { makePki, mutualTlsClient, mutualTlsServer } from "./support/pki.ts";

await using dir = await tempDir();
const pki = await makePki(dir.path, "mldsa65");

/** A connected qsign client and server over 127.0.0.1, and the client's TCP connection. */
async function connectedPair(): Promise<
  { client: TlsConnection; server: TlsConnection; clientTcp: Deno.TcpConn }
> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clientTcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const [client, server] = await Promise.all([
    connectTls(clientTcp, mutualTlsClient(pki)),
    listener.accept().then((tcp) => acceptTls(tcp, mutualTlsServer(pki))),
  ]);
  return { client, server, clientTcp };
}

/** Everything `tls` reads until the peer's close_notify, joined. */
async function readAll(tls: TlsConnection): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let chunk; (chunk = await tls.read()) !== null;) chunks.push(chunk.slice());
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) out.set(c, (at += c.length) - c.length);
  return out;
}

Deno.test("read, write and closeWrite carry data and both half-closes", async () => {
  const { client, server } = await connectedPair();
  const payload = crypto.getRandomValues(new Uint8Array(60_000));
  // The server echoes until the client's close_notify, then sends its own and reads no more.
  const echo = (async () => {
    for (let chunk; (chunk = await server.read()) !== null;) await server.write(chunk);
    await server.write(new TextEncoder().encode("bye"));
    await server.closeWrite();
  })();
  await client.write(payload.subarray(0, 30_000));
  await client.write(payload.subarray(30_000));
  await client.closeWrite();
  const received = await readAll(client);
  await echo;
  equal(received.length, payload.length + 3);
  ok(received.subarray(0, payload.length).every((byte, i) => byte === payload[i]));
  equal(new TextDecoder().decode(received.subarray(payload.length)), "bye");
  // Both sides have sent and received close_notify: a further read is the end again.
  equal(await client.read(), null);
  await Promise.all([client.close(), server.close()]);
});

Deno.test("one read at a time: a second pending read is a TypeError, the first goes on", async () => {
  const { client, server } = await connectedPair();
  try {
    const first = server.read();
    await rejects(server.read(), TypeError);
    await client.write(Uint8Array.of(1, 2, 3));
    equal((await first)?.length, 3);
  } finally {
    await Promise.all([client.close(), server.close()]);
  }
});

Deno.test("the web streams are made on first use and are the same object afterwards", async () => {
  const { client, server } = await connectedPair();
  try {
    equal(server.readable, server.readable);
    equal(server.writable, server.writable);
    const reader = server.readable.getReader();
    const pending = reader.read();
    // The stream's pull, which starts once the microtasks queued by read() have run, holds the
    // one read.
    await new Promise((resolve) => setTimeout(resolve, 0));
    await rejects(server.read(), TypeError);
    const writer = client.writable.getWriter();
    await writer.write(Uint8Array.of(7));
    equal((await pending).value?.[0], 7);
    await writer.close();
    equal((await reader.read()).done, true);
  } finally {
    await Promise.all([client.close(), server.close()]);
  }
});

Deno.test("close while a read is pending ends that read with null", async () => {
  const { client, server } = await connectedPair();
  const pending = server.read();
  await server.close();
  equal(await pending, null);
  await client.close();
});

Deno.test("a record the peer cannot open reaches read as a TlsError naming bad_record_mac", async () => {
  const { client, server, clientTcp } = await connectedPair();
  try {
    // An application_data record of 17 bytes (a tag and one byte) no key sealed, on the client's
    // own socket, after the handshake.
    await clientTcp.write(Uint8Array.of(23, 3, 3, 0, 17, ...new Uint8Array(17)));
    const error = await server.read().then(() => undefined, (e) => e);
    ok(error instanceof TlsError, String(error));
    equal(error.alert, "bad_record_mac");
    equal(error.sent, true);
  } finally {
    await Promise.all([client.close(), server.close()]);
  }
});

Deno.test("a ClientHello with a post-quantum key share is taken in one transport read", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clientTcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const serverTcp = await listener.accept();
  // The server's socket, counting the reads made before the server first writes (its
  // ServerHello): the ClientHello, more than 1 KiB, should need only one.
  let readsBeforeReply = 0, replied = false, clientHelloBytes = 0;
  const counted = {
    get remoteAddr() {
      return serverTcp.remoteAddr;
    },
    async read(p: Uint8Array) {
      const n = await serverTcp.read(p);
      if (!replied) readsBeforeReply++, clientHelloBytes += n ?? 0;
      return n;
    },
    write(p: Uint8Array) {
      replied = true;
      return serverTcp.write(p);
    },
    close: () => serverTcp.close(),
  };
  const [client, server] = await Promise.all([
    connectTls(clientTcp, mutualTlsClient(pki)),
    acceptTls(counted as unknown as Deno.Conn, mutualTlsServer(pki)),
  ]);
  try {
    ok(clientHelloBytes > 1024, `the ClientHello was ${clientHelloBytes} bytes`);
    equal(readsBeforeReply, 1, `${clientHelloBytes} bytes in ${readsBeforeReply} reads`);
  } finally {
    await Promise.all([client.close(), server.close()]);
  }
});
