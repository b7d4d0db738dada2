/**
 * HelloRetryRequest, resumption, KeyUpdate, bulk data, ALPN and SNI, against OpenSSL 3.5
 * (Node 26) in both directions and qsign↔qsign.
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { connectTls, type TlsConnection } from "../../src/tls/conn.ts";
import type { TlsClientConfig, TlsServerConfig } from "../../src/tls/config.ts";
import { MemorySessionCache, TicketKeys } from "../../src/tls/tickets.ts";
import { tempDir } from "../support/env.ts";
import { Peer } from "./support/peer.ts";
import {
  issueTestLeaf,
  makePki,
  mutualTlsClient,
  mutualTlsServer,
  type TestPki,
} from "./support/pki.ts";
import { EchoServer, qsignEcho, readExactly } from "./support/qsign.ts";

/** Writes `payload` and reads as many bytes back. */
async function roundTrip(tls: TlsConnection, payload: Uint8Array): Promise<Uint8Array> {
  const writer = tls.writable.getWriter();
  const [echo] = await Promise.all([
    readExactly(tls.readable, payload.length),
    writer.write(payload).finally(() => writer.releaseLock()),
  ]);
  return echo;
}

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

Deno.test("Q-TLS features against OpenSSL 3.5 and qsign", async (t) => {
  await using dir = await tempDir();
  const [pki, ecdsa] = await Promise.all([
    makePki(`${dir.path}/mldsa`, "mldsa65"),
    makePki(`${dir.path}/ecdsa`, "ecdsa-p384"),
  ]);
  await using peer = new Peer();
  const nodeServer = (extra = {}) =>
    peer.listen({
      ca: pki.rootPem,
      cert: pki.serverCertPem,
      key: pki.serverKeyPem,
      requestCert: true,
      ...extra,
    });
  const nodeClient = (extra = {}) => ({
    ca: pki.rootPem,
    cert: pki.clientCertPem,
    key: pki.clientKeyPem,
    servername: "localhost",
    ...extra,
  });
  const serverConfig = (extra: Partial<TlsServerConfig> = {}): TlsServerConfig => ({
    ...mutualTlsServer(pki),
    ...extra,
  });
  const clientConfig = (extra: Partial<TlsClientConfig> = {}): TlsClientConfig => ({
    ...mutualTlsClient(pki),
    ...extra,
  });
  const hello = new TextEncoder().encode("Hello, Q-TLS!");

  await t.step(
    "HelloRetryRequest: OpenSSL client shares X25519MLKEM768, qsign wants SecP384r1MLKEM1024",
    async () => {
      await using server = new EchoServer(serverConfig());
      const r = await peer.connect(
        server.port,
        nodeClient({ groups: ["X25519MLKEM768", "SecP384r1MLKEM1024"] }),
      );
      equal(r.ok, true, JSON.stringify(r));
      equal(r.echoed, true);
      const [outcome] = await server.waitFor(1);
      ok("info" in outcome);
      equal(outcome.info.helloRetry, true);
      equal(outcome.info.group, "SecP384r1MLKEM1024");
      deepEqual(outcome.info.clientOffer?.keyShares, ["X25519MLKEM768"]);
    },
  );

  await t.step(
    "HelloRetryRequest: qsign client shares X25519MLKEM768, OpenSSL wants SecP384r1MLKEM1024",
    async () => {
      const { server, port } = await nodeServer({ groups: ["SecP384r1MLKEM1024"] });
      const { info, echo } = await qsignEcho(
        port,
        clientConfig({ groups: ["X25519MLKEM768", "SecP384r1MLKEM1024"] }),
        hello,
      );
      deepEqual(echo, hello);
      equal(info.helloRetry, true);
      equal(info.group, "SecP384r1MLKEM1024");
      await peer.closeServer(server);
    },
  );

  await t.step("HelloRetryRequest qsign ↔ qsign", async () => {
    await using server = new EchoServer(serverConfig());
    const { info } = await qsignEcho(
      server.port,
      clientConfig({ groups: ["MLKEM768", "SecP384r1MLKEM1024"] }),
      hello,
    );
    equal(info.helloRetry, true);
    equal(info.group, "SecP384r1MLKEM1024");
  });

  await t.step("resumption: OpenSSL client with qsign's ticket", async () => {
    await using server = new EchoServer(serverConfig({ tickets: TicketKeys.random() }));
    const first = await peer.connect(server.port, nodeClient({ wantSession: true }));
    ok(first.session, JSON.stringify(first));
    equal(first.reused, false);
    const second = await peer.connect(server.port, nodeClient({ session: first.session }));
    equal(second.ok, true, JSON.stringify(second));
    equal(second.reused, true);
    equal(second.echoed, true);
    const [full, resumed] = await server.waitFor(2);
    ok("info" in full && "info" in resumed);
    equal(full.info.resumed, false);
    equal(resumed.info.resumed, true);
    // psk_dhe_ke: the resumed handshake still runs the hybrid key exchange (Node's default
    // offer has no SecP384r1MLKEM1024, so X25519MLKEM768).
    equal(resumed.info.group, "X25519MLKEM768");
    // The client's identity from the ticket (a resumed server has no certificates).
    equal(resumed.info.peerIdentity?.cn[0], "qtls-client.qsign.local");
  });

  await t.step("resumption: qsign client with OpenSSL's ticket", async () => {
    const { server, port } = await nodeServer();
    const sessionCache = new MemorySessionCache();
    const first = await qsignEcho(port, clientConfig({ sessionCache }), hello);
    equal(first.info.resumed, false);
    const second = await qsignEcho(port, clientConfig({ sessionCache }), hello);
    equal(second.info.resumed, true);
    deepEqual(second.echo, hello);
    const events = await peer.events(server);
    deepEqual(events.map((e) => e.reused), [false, true]);
    await peer.closeServer(server);
  });

  await t.step("resumption across two qsign servers sharing a ticket key file", async () => {
    const keyFile = `${dir.path}/ticket.key`;
    await Deno.writeTextFile(keyFile, btoa(String.fromCharCode(...random(48))));
    const node = async (clientAuth: "none" | "require") =>
      new EchoServer(serverConfig({ clientAuth, tickets: await TicketKeys.fromFile(keyFile) }));
    const sessionCache = new MemorySessionCache();
    /** Connects to `from`, then offers its ticket to `to` (the cache is keyed by port). */
    const resumesAt = async (from: EchoServer, to: EchoServer) => {
      const first = await qsignEcho(from.port, clientConfig({ sessionCache }), hello);
      equal(first.info.resumed, false);
      sessionCache.put(`localhost:${to.port}`, sessionCache.take(`localhost:${from.port}`)!);
      return (await qsignEcho(to.port, clientConfig({ sessionCache }), hello)).info.resumed;
    };
    {
      await using a = await node("none");
      await using b = await node("none");
      equal(await resumesAt(a, b), true);
      await using stranger = new EchoServer(serverConfig({
        clientAuth: "none",
        tickets: TicketKeys.random(),
      }));
      equal(await resumesAt(a, stranger), false);
    }
    {
      // With client certificates too: the ticket carries what re-checking the client needs.
      await using a = await node("require");
      await using b = await node("require");
      equal(await resumesAt(a, b), true);
      equal(await resumesAt(a, a), true);
    }
  });

  await t.step(
    "KeyUpdate: qsign asks OpenSSL to update; OpenSSL answers and keeps echoing",
    async () => {
      const { server, port } = await nodeServer();
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
      const tls = await connectTls(tcp, clientConfig());
      try {
        const a = random(1000), b = random(1000);
        deepEqual(await roundTrip(tls, a), a);
        await tls.keyUpdate(true);
        deepEqual(await roundTrip(tls, b), b);
        await tls.keyUpdate(false);
        deepEqual(await roundTrip(tls, a), a);
        deepEqual(tls.keyUpdates, { sent: 2, received: 1 });
      } finally {
        await tls.close();
      }
      await peer.closeServer(server);
    },
  );

  await t.step("KeyUpdate qsign ↔ qsign, both directions, update_requested honoured", async () => {
    const serverSide: TlsConnection[] = [];
    await using server = new EchoServer(serverConfig(), async (tls, chunk) => {
      serverSide.push(tls);
      if (chunk[0] === 0x4b) await tls.keyUpdate(true);
    });
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const tls = await connectTls(tcp, clientConfig());
    try {
      const plain = random(500).map((b) => b === 0x4b ? 0 : b);
      deepEqual(await roundTrip(tls, plain), plain);
      await tls.keyUpdate(true);
      deepEqual(await roundTrip(tls, plain), plain);
      const kick = new Uint8Array([0x4b, 1, 2, 3]);
      deepEqual(await roundTrip(tls, kick), kick);
      deepEqual(await roundTrip(tls, plain), plain);
      // Client: sent its own and the answer to the server's; received the answer and the server's.
      deepEqual(tls.keyUpdates, { sent: 2, received: 2 });
      deepEqual(serverSide[0].keyUpdates, { sent: 2, received: 2 });
    } finally {
      await tls.close();
    }
  });

  // 1 MiB is 64 full records; with at most 8 records per key (7 data + the KeyUpdate), a
  // single write of it needs ceil(64 / 7) = 10 keys, so 9 automatic KeyUpdates.
  const MIB = 1024 * 1024;
  const limited = { maxRecordsPerKey: 8 };

  await t.step("automatic KeyUpdate at maxRecordsPerKey: qsign ↔ qsign, byte-exact", async () => {
    const serverSide: TlsConnection[] = [];
    await using server = new EchoServer(serverConfig(limited), (tls) => {
      if (!serverSide.includes(tls)) serverSide.push(tls);
      return Promise.resolve();
    });
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const tls = await connectTls(tcp, clientConfig(limited));
    try {
      const big = random(MIB);
      const echo = await roundTrip(tls, big);
      ok(echo.length === big.length && echo.every((b, i) => b === big[i]), "echo differs");
      equal(tls.keyUpdates.sent, 9);
      // The server echoes each 16 KiB record as it arrives: 64 records, 9 KeyUpdates too.
      deepEqual(serverSide[0].keyUpdates, { sent: 9, received: 9 });
      equal(tls.keyUpdates.received, 9);
      const small = random(100);
      deepEqual(await roundTrip(tls, small), small);
    } finally {
      await tls.close();
    }
  });

  await t.step("automatic KeyUpdate: qsign client → OpenSSL server, byte-exact", async () => {
    const { server, port } = await nodeServer();
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
    const tls = await connectTls(tcp, clientConfig(limited));
    try {
      const big = random(MIB);
      const echo = await roundTrip(tls, big);
      ok(echo.length === big.length && echo.every((b, i) => b === big[i]), "echo differs");
      // OpenSSL does not rekey by itself.
      deepEqual(tls.keyUpdates, { sent: 9, received: 0 });
    } finally {
      await tls.close();
    }
    await peer.closeServer(server);
  });

  await t.step("automatic KeyUpdate: qsign server → OpenSSL client, byte-exact", async () => {
    const serverSide: TlsConnection[] = [];
    await using server = new EchoServer(serverConfig(limited), (tls) => {
      if (!serverSide.includes(tls)) serverSide.push(tls);
      return Promise.resolve();
    });
    const r = await peer.connect(server.port, nodeClient(), { sendBytes: MIB });
    equal(r.ok, true, JSON.stringify(r));
    equal(r.received, MIB);
    equal(r.echoed, true);
    // However OpenSSL's records arrive, the echo is at least 64 records: 9 KeyUpdates or more.
    ok(serverSide[0].keyUpdates.sent >= 9, JSON.stringify(serverSide[0].keyUpdates));
  });

  await t.step("maxRecordsPerKey outside 2..2^24 is a configuration error", async () => {
    await using server = new EchoServer(serverConfig());
    for (const maxRecordsPerKey of [1, 2 ** 24 + 1, 2.5]) {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await rejects(connectTls(tcp, clientConfig({ maxRecordsPerKey })), ConfigError);
    }
  });

  await t.step("10 MB each way, byte-exact: qsign client ↔ OpenSSL server", async () => {
    const { server, port } = await nodeServer();
    const big = random(10 * 1024 * 1024);
    const { echo } = await qsignEcho(port, clientConfig(), big);
    equal(echo.length, big.length);
    ok(echo.every((b, i) => b === big[i]));
    await peer.closeServer(server);
  });

  await t.step("10 MB each way, byte-exact: OpenSSL client ↔ qsign server", async () => {
    await using server = new EchoServer(serverConfig());
    const r = await peer.connect(server.port, nodeClient(), { sendBytes: 10 * 1024 * 1024 });
    equal(r.ok, true, JSON.stringify(r));
    equal(r.received, 10 * 1024 * 1024);
    equal(r.echoed, true);
  });

  await t.step("ALPN both ways, and no_application_protocol", async () => {
    await using server = new EchoServer(serverConfig({ alpn: ["qsign/1", "h2"] }));
    const r = await peer.connect(server.port, nodeClient({ alpn: ["h2", "qsign/1"] }));
    equal(r.alpn, "qsign/1");
    const refused = await peer.connect(server.port, nodeClient({ alpn: ["http/1.1"] }));
    equal(refused.code, "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL");
    const outcomes = await server.waitFor(2);
    ok("error" in outcomes[1]);
    equal(outcomes[1].error.alert, "no_application_protocol");

    const { server: node, port } = await nodeServer({ alpn: ["h2", "qsign/1"] });
    const { info } = await qsignEcho(port, clientConfig({ alpn: ["qsign/1"] }), hello);
    equal(info.alpn, "qsign/1");
    await peer.closeServer(node);
  });

  await t.step("SNI and signature algorithms choose among several certificates", async () => {
    const alpha = await issueTestLeaf(pki, "server", {
      cn: "alpha.example",
      sans: ["DNS:alpha.example"],
    });
    const beta = await issueTestLeaf(pki, "server", {
      cn: "beta.example",
      sans: ["DNS:beta.example"],
    });
    await using server = new EchoServer(serverConfig({
      certificates: [pki.server, ecdsa.server, alpha.key, beta.key],
      trustAnchors: [pki.rootDer, ecdsa.rootDer],
    }));
    const ca = pki.rootPem + ecdsa.rootPem;
    const seen = [];
    for (
      const [servername, sigalgs] of [
        ["beta.example", undefined],
        ["alpha.example", undefined],
        ["localhost", undefined],
        ["localhost", ["ecdsa_secp384r1_sha384", "mldsa65"]],
      ] as [string, string[] | undefined][]
    ) {
      const r = await peer.connect(server.port, nodeClient({ ca, servername, sigalgs }));
      equal(r.ok, true, JSON.stringify(r));
      seen.push(r.peerSubject);
    }
    deepEqual(seen, [
      "beta.example",
      "alpha.example",
      "qtls-server.qsign.local",
      "qtls-server.qsign.local",
    ]);
    const outcomes = await server.waitFor(4);
    deepEqual(
      outcomes.map((o) => "info" in o && `${o.info.serverName} ${o.info.signatureScheme}`),
      [
        "beta.example mldsa65",
        "alpha.example mldsa65",
        "localhost mldsa65",
        "localhost ecdsa_secp384r1_sha384",
      ],
    );

    // qsign client → OpenSSL server choosing its context by SNI.
    const { server: node, port } = await nodeServer({
      sniContexts: { "alpha.example": { cert: alpha.certPem, key: alpha.keyPem } },
    });
    const { info } = await qsignEcho(port, clientConfig({ serverName: "alpha.example" }), hello);
    equal(info.peerLeaf?.subjectField("CN")[0], "alpha.example");
    const events = await peer.events(node);
    equal(events[0].servername, "alpha.example");
    await peer.closeServer(node);
  });
});

export type { TestPki };
