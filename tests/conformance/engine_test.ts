/**
 * Conformance rows for engine settings the CLI does not expose: the record_size_limit qsign
 * announces (RFC 8449 §4: a record over it is record_overflow), in both roles, against the
 * engine's own server (`acceptTls`) and client (`connectTls`).
 */
import { connectTls } from "../../src/tls/conn.ts";
import { tempDir } from "../support/env.ts";
import { makePki, mutualTlsServer, type TestPki } from "../tls/support/pki.ts";
import { EchoServer } from "../tls/support/qsign.ts";
import { ClientFlow, ServerFlow } from "./flow.ts";
import { type Outcome, type Row, row, runTable } from "./table.ts";
import { CT, EXT, ext, handshake, HS, RecordConn } from "./wire.ts";

const LIMIT = 512;

interface Ctx {
  pki: TestPki;
  server: EchoServer;
}

/** A handshake with qsign's server announcing LIMIT, then one record of `inner` bytes. */
function toServer(inner: number, type: number = CT.data) {
  return async (ctx: Ctx): Promise<Outcome> => {
    const c = await ClientFlow.open(ctx.server.port, ctx.pki.client);
    try {
      const spec = await c.defaultHello();
      spec.extensions.push(ext(EXT.record_size_limit, [0x40, 0x01]));
      await c.sendHello(spec);
      await c.readServerHello();
      await c.handshakeKeys();
      await c.readServerFlight();
      await c.protectWrites();
      // Our flight, in records the server's limit allows.
      await c.sendClientFlight(await c.clientFlightMessages(), LIMIT - 1);
      await c.exchange();
      // The inner plaintext: content, the type byte, padding.
      const body = type === CT.handshake
        ? handshake(HS.key_update, Uint8Array.of(0))
        : new Uint8Array(1);
      await c.rc.send(type, body, { padding: inner - body.length - 1 });
      if (type === CT.handshake) await c.keyUpdate(false).catch(() => {});
      await c.exchange().catch(() => {});
      return c.rc.alertSeen?.alert ?? "ok";
    } finally {
      c.close();
    }
  };
}

/** qsign's client announcing LIMIT against a server that sends one record of `inner` bytes. */
function toClient(inner: number) {
  return async (ctx: Ctx): Promise<Outcome> => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = (async () => {
      const tcp = await Deno.connect({
        hostname: "127.0.0.1",
        port: (listener.addr as Deno.NetAddr).port,
      });
      const tls = await connectTls(tcp, {
        serverName: "localhost",
        trustAnchors: [ctx.pki.rootDer],
        recordSizeLimit: LIMIT,
      });
      const reader = tls.readable.getReader();
      try {
        await reader.read();
        return "ok";
      } catch {
        return "failed";
      } finally {
        await tls.close().catch(() => {});
      }
    })();
    const f = new ServerFlow(new RecordConn(await listener.accept()), ctx.pki.server);
    listener.close();
    try {
      await f.readClientHello();
      await f.sendServerHello(await f.serverHello());
      await f.sendFlight(await f.flight([ext(EXT.record_size_limit, [0x40, 0x01])]));
      await f.readClientFinished();
      await f.rc.send(CT.data, new Uint8Array(1), { padding: inner - 2 });
      return await client === "ok" ? "ok" : await f.rc.ending();
    } finally {
      f.rc.close();
    }
  };
}

const rows: Row<Ctx>[] = [
  row(
    "RFC 8449 §4",
    "ok",
    `server: a record of exactly ${LIMIT} bytes of inner plaintext`,
    toServer(LIMIT),
  ),
  row(
    "RFC 8449 §4",
    "record_overflow",
    `server: ${LIMIT + 1} bytes of inner plaintext`,
    toServer(LIMIT + 1),
  ),
  row(
    "RFC 8449 §4",
    "record_overflow",
    `server: a KeyUpdate padded past ${LIMIT}`,
    toServer(LIMIT + 100, CT.handshake),
  ),
  row("RFC 8449 §4", "ok", `client: a record of exactly ${LIMIT} bytes`, toClient(LIMIT)),
  row(
    "RFC 8449 §4",
    "record_overflow",
    `client: ${LIMIT + 1} bytes of inner plaintext`,
    toClient(LIMIT + 1),
  ),
];

Deno.test({
  name: "RFC 8449 conformance: the engine's own record_size_limit",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await using dir = await tempDir();
    const pki = await makePki(dir.path, "mldsa65");
    await using server = new EchoServer({ ...mutualTlsServer(pki), recordSizeLimit: LIMIT });
    await runTable(t, rows, { pki, server }, { batch: 1 });
  },
});
