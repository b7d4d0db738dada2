/**
 * Proxy mode and the client-side forwarder, with real peers: an OpenSSL 3.5 HTTPS client
 * through `qsign serve --mode proxy` to an HTTP backend (byte-exact, a 50 MB download and a
 * 20 MB upload), the PROXY v2 header as a backend sees it, and `qsign connect --listen`
 * carrying a plain TCP client to a Q-TLS server.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { tempDir } from "../support/env.ts";
import {
  clientArgs,
  Daemon,
  makePki,
  PEER_HTTPS_CLIENT,
  qsignClient,
  runPeer,
  serveArgs,
} from "./support.ts";

const BIG = 50 * 1024 * 1024;

function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(length, offset + 65536)));
  }
  return bytes;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An HTTP backend: GET /small, GET /big (50 MB), POST /upload (answers length and SHA-256). */
function httpBackend(big: Uint8Array<ArrayBuffer>) {
  const listening = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => listening.resolve(port),
  }, async (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/small") return new Response("hello from the backend\n");
    if (path === "/big") return new Response(big);
    if (path === "/upload") {
      const body = new Uint8Array(await request.arrayBuffer());
      return Response.json({ length: body.length, sha256: await sha256Hex(body) });
    }
    return new Response("not found\n", { status: 404 });
  });
  return { server, port: listening.promise };
}

interface HttpsResult {
  status: number;
  length: number;
  sha256: string;
  localPort: number;
  body?: string;
}

Deno.test("proxy mode: an OpenSSL client gets byte-exact HTTP responses, 50 MB included", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const big = randomBytes(BIG);
  const backend = httpBackend(big);
  try {
    await using daemon = await Daemon.start(
      serveArgs(pki, ["--mode", "proxy", "--target", `127.0.0.1:${await backend.port}`]),
    );
    const peer = (path: string, ...extra: string[]) =>
      runPeer(PEER_HTTPS_CLIENT, [
        String(daemon.port()),
        pki.root,
        pki.clientCert,
        pki.clientKey,
        path,
        ...extra,
      ], 300_000) as Promise<HttpsResult>;

    const small = await peer("/small");
    deepEqual([small.status, small.body], [200, "hello from the backend\n"]);

    const download = await peer("/big");
    equal(download.status, 200);
    equal(download.length, BIG);
    equal(download.sha256, await sha256Hex(big));

    const uploadLength = 20 * 1024 * 1024;
    const upload = await peer("/upload", String(uploadLength));
    deepEqual(JSON.parse(upload.body!), {
      length: uploadLength,
      sha256: await sha256Hex(new Uint8Array(uploadLength)),
    });

    const closed = await daemon.waitFor((e) =>
      e.event === "closed" && e.bytes_sent as number > BIG
    );
    ok((closed.bytes_sent as number) > BIG);
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
    match(metrics, /^qtls_backend_errors_total\{service="default"\} 0$/m);
  } finally {
    await backend.server.shutdown();
  }
});

Deno.test("proxy mode: an unreachable target is counted as a backend error", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const closedPort = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = l.addr.port;
    l.close();
    return port;
  })();
  await using daemon = await Daemon.start(
    serveArgs(pki, ["--mode", "proxy", "--target", `127.0.0.1:${closedPort}`]),
  );
  await runPeer(PEER_HTTPS_CLIENT, [
    String(daemon.port()),
    pki.root,
    pki.clientCert,
    pki.clientKey,
    "/",
  ])
    .then(
      () => ok(false, "the request should fail"),
      (e) => match(String(e), /socket hang up|ECONNRESET|closed/i),
    );
  const failure = await daemon.waitFor((e) => e.event === "backend_connect_failed");
  equal(failure.target, `127.0.0.1:${closedPort}`);
  const metrics = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
  match(metrics, /^qtls_backend_errors_total\{service="default"\} 1$/m);
});

/** Decodes a PROXY v2 header (independently of src/daemon/proxy_protocol.ts). */
function decodeProxyV2(header: Uint8Array) {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const signature = new TextDecoder("latin1").decode(header.subarray(0, 12));
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const tlvs = (from: number, to: number) => {
    const out: Record<number, Uint8Array> = {};
    for (let i = from; i < to;) {
      const length = view.getUint16(i + 1);
      out[header[i]] = header.subarray(i + 3, i + 3 + length);
      i += 3 + length;
    }
    return out;
  };
  const family = header[13];
  equal(family, 0x11, "TCP over IPv4");
  const end = 16 + view.getUint16(14);
  const top = tlvs(28, end);
  const ssl = top[0x20];
  const sub = tlvs(
    ssl.byteOffset - header.byteOffset + 5,
    ssl.byteOffset - header.byteOffset + ssl.length,
  );
  return {
    signature,
    versionCommand: header[12],
    source: `${header.subarray(16, 20).join(".")}:${view.getUint16(24)}`,
    destinationPort: view.getUint16(26),
    sslClientFlags: ssl[0],
    sslVerify: new DataView(ssl.buffer, ssl.byteOffset + 1, 4).getUint32(0),
    version: text(sub[0x21]),
    commonName: text(sub[0x22]),
    cipher: text(sub[0x23]),
    subject: text(top[0xe0]),
    fingerprint: text(top[0xe1]),
  };
}

Deno.test("--proxy-protocol: the backend sees the client's address and verified identity", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen = (async () => {
    const conn = await backend.accept();
    const buffer = new Uint8Array(4096);
    let received = 0;
    while (received < 16 || received < 16 + new DataView(buffer.buffer).getUint16(14)) {
      const n = await conn.read(buffer.subarray(received));
      if (n === null) throw new Error("backend: connection ended inside the PROXY header");
      received += n;
    }
    const header = decodeProxyV2(buffer.slice(0, 16 + new DataView(buffer.buffer).getUint16(14)));
    const body = JSON.stringify(header);
    await conn.write(new TextEncoder().encode(
      `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    ));
    conn.close();
    return header;
  })();
  try {
    await using daemon = await Daemon.start(
      serveArgs(pki, [
        "--mode",
        "proxy",
        "--target",
        `127.0.0.1:${backend.addr.port}`,
        "--proxy-protocol",
      ]),
    );
    const result = await runPeer(PEER_HTTPS_CLIENT, [
      String(daemon.port()),
      pki.root,
      pki.clientCert,
      pki.clientKey,
      "/who",
    ]) as HttpsResult;
    const header = await seen;
    deepEqual(JSON.parse(result.body!), header);
    equal(header.signature, "\r\n\r\n\0\r\nQUIT\n");
    equal(header.versionCommand, 0x21);
    equal(header.source, `127.0.0.1:${result.localPort}`);
    equal(header.destinationPort, daemon.port());
    equal(header.sslClientFlags, 0x01 | 0x02);
    equal(header.sslVerify, 0);
    equal(header.version, "TLSv1.3");
    equal(header.commonName, "qtls-client.qsign.local");
    equal(header.cipher, "TLS_AES_256_GCM_SHA384");
    match(header.subject, /CN=qtls-client\.qsign\.local/);
    const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
    equal(header.fingerprint, handshake.client_fingerprint);
  } finally {
    backend.close();
  }
});

Deno.test("qsign connect --listen carries a plain TCP client to a Q-TLS server", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using server = await Daemon.start(serveArgs(pki));
  await using forwarder = await Daemon.start([
    "--listen",
    "127.0.0.1:0",
    "--target",
    `127.0.0.1:${server.port()}`,
    ...clientArgs(pki),
  ], { command: "connect", readyEvent: "listening" });

  for (const message of ["plain hello", "두 번째"]) {
    const plain = await Deno.connect({ hostname: "127.0.0.1", port: forwarder.port() });
    await plain.write(new TextEncoder().encode(message));
    const buffer = new Uint8Array(1024);
    const n = await plain.read(buffer);
    const bytes = new TextEncoder().encode(message).length;
    match(
      new TextDecoder().decode(buffer.subarray(0, n!)),
      new RegExp(`^QSIGN 서버 응답 \\[세션 #\\d\\]: 메시지 수신 완료 \\(${bytes} 바이트\\)\\n$`),
    );
    await plain.closeWrite();
    equal(
      await plain.read(buffer),
      null,
      "the forwarder half-closes after the server's close_notify",
    );
    plain.close();
  }
  const forwarded = await forwarder.waitFor((e) => e.event === "forwarding");
  equal(forwarded.group, "SecP384r1MLKEM1024");
  const handshake = await server.waitFor((e) => e.event === "handshake_ok");
  match(String(handshake.client_subject), /CN=qtls-client\.qsign\.local/);
  equal((await forwarder.stop("SIGTERM")).code, 0);
});

/** `qsign serve` proxying to 127.0.0.1:`port` with a one-second idle timeout. */
function idleProxy(pki: Awaited<ReturnType<typeof makePki>>, port: number): Promise<Daemon> {
  return Daemon.start(serveArgs(pki, [
    "--mode",
    "proxy",
    "--target",
    `127.0.0.1:${port}`,
    "--idle-timeout",
    "1s",
  ]));
}

Deno.test("--idle-timeout ends an idle proxied session and its backend connection, no backend error", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const backendSaw = (async () => {
    const conn = await backend.accept();
    const n = await conn.read(new Uint8Array(64)).catch(() => null);
    conn.close();
    return n;
  })();
  try {
    await using daemon = await idleProxy(pki, backend.addr.port);
    const tls = await qsignClient(pki, daemon.port());
    const reader = tls.readable.getReader();
    equal((await reader.read()).done, true);
    reader.releaseLock();
    await tls.close();
    equal(await backendSaw, null, "the backend connection is closed too");
    await daemon.waitFor((e) => e.event === "idle_timeout");
    await daemon.waitFor((e) => e.event === "closed");
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
    match(metrics, /^qtls_backend_errors_total\{service="default"\} 0$/m);
  } finally {
    backend.close();
  }
});

Deno.test("--idle-timeout closes a proxied session whose client stopped reading, within the alert deadline", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  // A backend that sends until its writes fail (at most 512 MiB): the daemon's writes to the
  // client, which reads nothing, fill every buffer on the way and then never complete.
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sending = (async () => {
    const conn = await backend.accept();
    const chunk = new Uint8Array(1 << 20).fill(1);
    let sent = 0;
    try {
      while (sent < 512 * chunk.length) sent += await conn.write(chunk);
    } catch {
      // The daemon closed the backend connection.
    }
    conn.close();
    return sent;
  })();
  try {
    await using daemon = await idleProxy(pki, backend.addr.port);
    const tls = await qsignClient(pki, daemon.port());
    await daemon.waitFor((e) => e.event === "idle_timeout", 30_000);
    // The close_notify queued behind the stuck write is given up after ALERT_DEADLINE_MS (5 s)
    // and the connection closed; before, the close waited for the write, that is forever.
    await daemon.waitFor((e) => e.event === "closed", 15_000);
    ok(await sending < 512 << 20, "the daemon stopped reading the backend and then closed it");
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
    match(metrics, /^qtls_connections_active\{service="default"\} 0$/m);
    await tls.close();
  } finally {
    backend.close();
  }
});

Deno.test("proxy mode carries a half-close: the backend reads to the end, then still answers", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // Like `wc -c`: count everything up to the client's end of stream, then reply and close.
  const counting = (async () => {
    const conn = await backend.accept();
    let total = 0;
    const buffer = new Uint8Array(65536);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) total += n;
    await conn.write(new TextEncoder().encode(`${total} bytes\n`));
    conn.close();
    return total;
  })();
  try {
    await using daemon = await Daemon.start(
      serveArgs(pki, ["--mode", "proxy", "--target", `127.0.0.1:${backend.addr.port}`]),
    );
    const tls = await qsignClient(pki, daemon.port());
    const writer = tls.writable.getWriter();
    const payload = new Uint8Array(3 * 1024 * 1024).fill(7);
    await writer.write(payload);
    await writer.close(); // close_notify: our write side ends, reading goes on
    const reply = await new Response(tls.readable).text();
    equal(reply, `${payload.length} bytes\n`);
    equal(await counting, payload.length);
    await tls.close();
  } finally {
    backend.close();
  }
});
