/**
 * Reading inbound PROXY protocol headers over real sockets: headers from Debian's HAProxy (v1
 * with `send-proxy`, v2 with `send-proxy-v2`), qsign's own v2
 * encoder, and crafted malformed, oversized and truncated headers. The bytes after a header must
 * stay unread for the TLS engine. Then `qsign serve` behind a balancer: a connection waiting for
 * its header counts against `max_connections` and in `qtls_connections_active`, and a drain closes
 * it.
 */
import { deepEqual, equal, match, rejects } from "node:assert/strict";
import {
  MAX_V2_BODY,
  type ProxyHeader,
  ProxyHeaderError,
  readProxyHeader,
} from "../../src/daemon/proxy_header.ts";
import { encodeProxyV2Header, PROXY_V2_SIGNATURE } from "../../src/daemon/proxy_protocol.ts";
import { concat } from "../../src/tls/codec/bytes.ts";
import { connectTls, type TlsConnection } from "../../src/tls/conn.ts";
import { tempDir } from "../support/env.ts";
import { freePort, waitForPort } from "../support/services.ts";
import {
  Daemon,
  exchange,
  makePki,
  type Pki,
  qsignClientConfig,
  sampleValue,
  scrapeMetrics,
  serveArgs,
} from "./support.ts";

const encoder = new TextEncoder();
const AFTER = encoder.encode("\x16\x03\x01TLS follows");

/** Sends `bytes` on a loopback connection and returns what the server side read. */
async function receive(
  bytes: Uint8Array,
  options: { close?: boolean } = {},
): Promise<{ header: ProxyHeader; rest: Uint8Array }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  try {
    await client.write(bytes);
    if (options.close) client.closeWrite();
    const header = await readProxyHeader(server);
    const rest = new Uint8Array(AFTER.length);
    let filled = 0;
    while (filled < rest.length) {
      const n = await server.read(rest.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return { header, rest: rest.subarray(0, filled) };
  } finally {
    client.close();
    server.close();
  }
}

function v2(command: number, family: number, body: Uint8Array): Uint8Array {
  const head = new Uint8Array(16);
  head.set(PROXY_V2_SIGNATURE);
  head[12] = 0x20 | command;
  head[13] = family;
  new DataView(head.buffer).setUint16(14, body.length);
  return concat(head, body);
}

Deno.test("version 1 lines for TCP4, TCP6 and UNKNOWN, the stream behind them unread", async () => {
  const tcp4 = await receive(
    concat(encoder.encode("PROXY TCP4 192.0.2.7 127.0.0.1 51234 8443\r\n"), AFTER),
  );
  deepEqual(tcp4.header, {
    command: "proxy",
    version: 1,
    source: { transport: "tcp", hostname: "192.0.2.7", port: 51234 },
    destination: { transport: "tcp", hostname: "127.0.0.1", port: 8443 },
  });
  deepEqual(tcp4.rest, AFTER);
  const tcp6 = await receive(
    concat(encoder.encode("PROXY TCP6 2001:DB8:0:0::1 ::1 1 443\r\n"), AFTER),
  );
  equal(tcp6.header.command === "proxy" && tcp6.header.source.hostname, "2001:db8::1");
  deepEqual(tcp6.rest, AFTER);
  const unknown = await receive(concat(encoder.encode("PROXY UNKNOWN\r\n"), AFTER));
  deepEqual(unknown.header, { command: "local", version: 1 });
  deepEqual(unknown.rest, AFTER);
});

Deno.test("version 2 from qsign's own encoder, LOCAL, and unspecified families", async () => {
  const encoded = encodeProxyV2Header({
    client: { transport: "tcp", hostname: "198.51.100.9", port: 40000 },
    local: { transport: "tcp", hostname: "127.0.0.1", port: 8443 },
    tls: { version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384", group: "X25519MLKEM768" },
    clientIdentity: { subject: "CN=a", fingerprint: "00", commonName: "a" },
  });
  const proxied = await receive(concat(encoded, AFTER));
  deepEqual(proxied.header, {
    command: "proxy",
    version: 2,
    source: { transport: "tcp", hostname: "198.51.100.9", port: 40000 },
    destination: { transport: "tcp", hostname: "127.0.0.1", port: 8443 },
  });
  deepEqual(proxied.rest, AFTER, "TLVs are consumed, nothing after them");
  const local = await receive(concat(v2(0x0, 0x00, new Uint8Array(0)), AFTER));
  deepEqual(local.header, { command: "local", version: 2 });
  deepEqual(local.rest, AFTER);
  const unix = await receive(concat(v2(0x1, 0x31, new Uint8Array(216)), AFTER));
  deepEqual(unix.header, { command: "local", version: 2 });
  deepEqual(unix.rest, AFTER);
});

Deno.test("malformed, oversized, truncated and missing headers are refused", async () => {
  const refused = async (bytes: Uint8Array, problem: RegExp, close = false) => {
    await rejects(receive(bytes, { close }), (e: unknown) => {
      equal(e instanceof ProxyHeaderError, true, String(e));
      match((e as ProxyHeaderError).problem, problem);
      return true;
    });
  };
  await refused(concat(AFTER), /missing \(the connection starts with byte 0x16\)/);
  await refused(encoder.encode(`PROXY TCP4 ${"1".repeat(120)}\r\n`), /longer than 107 bytes/);
  await refused(encoder.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), /malformed/);
  await refused(encoder.encode("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), /malformed/);
  await refused(encoder.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), /malformed/);
  await refused(encoder.encode("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), /malformed/);
  await refused(encoder.encode("PROXY TCP4 1.2.3.4"), /closed during the header/, true);
  await refused(v2(0x1, 0x11, new Uint8Array(MAX_V2_BODY + 1)), /at most 4096/);
  await refused(v2(0x1, 0x11, new Uint8Array(8)), /holds no address/);
  await refused(v2(0x1, 0x11, concat(new Uint8Array(12), Uint8Array.of(0xe0, 0, 9))), /TLV runs/);
  await refused(v2(0x2, 0x11, new Uint8Array(12)), /unknown version 2 command 2/);
  const badSignature = v2(0x1, 0x11, new Uint8Array(12));
  badSignature[5] = 0x41;
  await refused(badSignature, /bad version 2 signature/);
  const version3 = v2(0x1, 0x11, new Uint8Array(12));
  version3[12] = 0x31;
  await refused(version3, /unsupported version 3/);
});

/** HAProxy forwarding a loopback port to `backendPort` with `serverOptions`, until disposed. */
async function haproxy(
  dir: string,
  backendPort: number,
  serverOptions: string,
): Promise<{ port: number } & AsyncDisposable> {
  const port = freePort();
  const config = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(
    config,
    [
      "global",
      "  log stderr format short local0 warning",
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 30s",
      "  timeout server 30s",
      "frontend front",
      `  bind 127.0.0.1:${port}`,
      "  default_backend nodes",
      "backend nodes",
      `  server node 127.0.0.1:${backendPort} ${serverOptions}`,
      "",
    ].join("\n"),
  );
  const child = new Deno.Command("haproxy", {
    args: ["-f", config, "-db"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  await waitForPort(port, "haproxy").catch(async (e) => {
    throw new Error(`${e.message}: ${await stderr}`);
  });
  return {
    port,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

for (
  const [name, option, version] of [["send-proxy", "send-proxy", 1], [
    "send-proxy-v2",
    "send-proxy-v2",
    2,
  ]] as const
) {
  Deno.test(`HAProxy's ${name} header names the client`, async () => {
    await using dir = await tempDir("qsign-proxy-header-");
    using backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    await using front = await haproxy(dir.path, backend.addr.port, option);
    const client = await Deno.connect({ hostname: "127.0.0.1", port: front.port });
    try {
      await client.write(AFTER);
      const clientAddr = client.localAddr as Deno.NetAddr;
      // The helper's readiness probe reached the backend first: skip connections until ours.
      for (let accepted = 0;; accepted++) {
        equal(accepted < 4, true, "the client's connection reached the backend");
        // The probe's connection may be reset before it is accepted (ENOTCONN).
        const conn = await backend.accept().catch(() => undefined);
        if (!conn) continue;
        try {
          // HAProxy may give up on the probe's connection before sending it a header.
          const header = await readProxyHeader(conn).catch(() => undefined);
          if (!header) continue;
          equal(header.command, "proxy");
          equal(header.version, version);
          if (header.command !== "proxy" || header.source.port !== clientAddr.port) continue;
          equal(header.source.hostname, clientAddr.hostname);
          equal(header.destination.port, front.port);
          const rest = new Uint8Array(AFTER.length);
          let filled = 0;
          while (filled < rest.length) filled += (await conn.read(rest.subarray(filled))) ?? 0;
          deepEqual(rest, AFTER);
          break;
        } finally {
          conn.close();
        }
      }
    } finally {
      client.close();
    }
  });
}

/**
 * `qsign serve` taking PROXY headers from 127.0.0.1 (the tests' only source address: Deno.connect
 * cannot choose another), with a handshake timeout far beyond each test's length, so that only
 * what the test does ends a connection waiting for its header.
 */
async function serveBehindBalancer(pki: Pki, extra: string[]): Promise<Daemon> {
  return await Daemon.start(serveArgs(pki, [
    ...["--accept-proxy-protocol", "--proxy-from", "127.0.0.1/32"],
    ...["--handshake-timeout", "30s"],
    ...extra,
  ]));
}

/**
 * `count` connections from the balancer that send nothing, so wait for their header. The daemon
 * accepts them after the client's connect has returned: this waits (bounded) until the gauge
 * shows them, and leaves it to the caller to assert that it does.
 */
async function waitingConnections(
  daemon: Daemon,
  port: number,
  count: number,
): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < count; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  const deadline = Date.now() + 10_000;
  while (await activeConnections(daemon) < count && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return conns;
}

async function activeConnections(daemon: Daemon): Promise<number> {
  return sampleValue(await scrapeMetrics(daemon), "qtls_connections_active") ?? 0;
}

/** A client behind the balancer: its PROXY v1 header naming `source`, then mutual TLS. */
async function throughBalancer(pki: Pki, port: number, source: string): Promise<TlsConnection> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await tcp.write(encoder.encode(`PROXY TCP4 ${source} 127.0.0.1 40000 ${port}\r\n`));
    return await connectTls(tcp, await qsignClientConfig(pki, port));
  } catch (e) {
    closeAll([tcp]);
    throw e;
  }
}

function closeAll(conns: Deno.TcpConn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // Closed by the daemon already.
    }
  }
}

Deno.test("connections waiting for their PROXY header count against max_connections", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await serveBehindBalancer(pki, [
    "--max-connections",
    "2",
    "--max-handshakes-per-ip",
    "0",
  ]);
  const port = daemon.port();
  const waiting = await waitingConnections(daemon, port, 2);
  try {
    // A third connection, with its header and a handshake, finds the daemon full.
    await rejects(throughBalancer(pki, port, "192.0.2.7"));
    const failures = await scrapeMetrics(daemon);
    equal(
      sampleValue(failures, "qtls_handshake_failures_total", { reason: "max_connections" }),
      1,
    );
    equal(await activeConnections(daemon), 2);
  } finally {
    closeAll(waiting);
  }

  // Their slots free once the balancer gives up on them (counted as headers that never came).
  await daemon.waitForCount((e) => e.event === "proxy_header_refused", 2);
  const late = await throughBalancer(pki, port, "192.0.2.7");
  equal(await exchange(late, "late"), "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (4 바이트)\n");
  await late.close();
  const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
  equal(handshake.peer, "192.0.2.7:40000");
});

Deno.test("a drain closes a connection waiting for its PROXY header", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await serveBehindBalancer(pki, ["--drain-timeout", "1s"]);
  const [waiting] = await waitingConnections(daemon, daemon.port(), 1);
  try {
    equal(await activeConnections(daemon), 1);
    daemon.signal("SIGTERM");
    const stopping = await daemon.waitFor((e) => e.event === "stopping");
    equal(stopping.open_connections, 1);
    // Closed at the drain timeout (1 s), not at the handshake timeout 30 s away.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = await Promise.race([
      waiting.read(new Uint8Array(16)).catch(() => null),
      new Promise<"open">((resolve) => timer = setTimeout(() => resolve("open"), 15_000)),
    ]);
    clearTimeout(timer);
    equal(read, null, "the daemon closed the waiting connection");
    const drained = await daemon.waitFor((e) => e.event === "drain_timeout");
    equal(drained.closing, 1);
    equal((await daemon.exited()).code, 0);
  } finally {
    closeAll([waiting]);
  }
});
