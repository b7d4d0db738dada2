/**
 * Floods an attacker can send before or after authenticating, against the real engine over
 * loopback sockets: a ClientHello in 1-byte records (reassembly stays linear, the event loop
 * stays responsive), a ClientHello larger than the cap, many connections each holding part of
 * a large message (the shared handshake buffer budget), and a KeyUpdate flood.
 */
import { equal, ok } from "node:assert/strict";
import process from "node:process";
import { TlsError } from "../../src/tls/alert.ts";
import { connectTls, KEY_UPDATE_BURST } from "../../src/tls/conn.ts";
import type { TlsServerConfig } from "../../src/tls/config.ts";
import { HandshakeBufferBudget, MAX_CLIENT_HELLO } from "../../src/tls/record.ts";
import { tempDir } from "../support/env.ts";
import { makePki } from "./support/pki.ts";
import { EchoServer, readExactly } from "./support/qsign.ts";

/** A plaintext record of `type` around `body`. */
function record(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out.set([type, 3, 1, body.length >> 8, body.length & 0xff]);
  out.set(body, 5);
  return out;
}

/** A handshake message of `type` declaring `length` bytes; `body` bytes of it follow. */
function handshakeStart(type: number, length: number, body = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  out.set([type, length >> 16, (length >> 8) & 0xff, length & 0xff]);
  out.set(body, 4);
  return out;
}

/** `message` cut into records of one byte each. */
function oneByteRecords(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(message.length * 6);
  for (let i = 0; i < message.length; i++) out.set(record(22, message.subarray(i, i + 1)), i * 6);
  return out;
}

/** Reads until the server's alert record (plaintext, type 21) or the end; its description. */
async function readAlert(conn: Deno.Conn): Promise<number | undefined> {
  const buffer = new Uint8Array(64);
  let got = 0;
  for (;;) {
    const n = await conn.read(buffer.subarray(got)).catch(() => null);
    if (n === null) return undefined;
    got += n;
    if (got >= 7 && buffer[0] === 21) return buffer[6];
  }
}

/** The largest lateness of a 5 ms timer while `work` runs: how long the event loop was held. */
async function eventLoopDelay<T>(
  work: () => Promise<T>,
): Promise<{ result: T; maxDelayMs: number }> {
  let maxDelayMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxDelayMs = Math.max(maxDelayMs, now - last - 5);
    last = now;
  }, 5);
  try {
    return { result: await work(), maxDelayMs };
  } finally {
    clearInterval(timer);
  }
}

const ALERT = { illegal_parameter: 47, decode_error: 50, internal_error: 80 };

Deno.test("handshake floods stay bounded", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "mldsa44");
  const serverConfig = (extra: Partial<TlsServerConfig> = {}): TlsServerConfig => ({
    certificates: [pki.server],
    clientAuth: "none",
    trustAnchors: [],
    ...extra,
  });

  await t.step(
    "a ClientHello just under the cap in 1-byte records: linear, loop responsive",
    async () => {
      await using server = new EchoServer(serverConfig());
      const hello = handshakeStart(1, MAX_CLIENT_HELLO - 4, new Uint8Array(MAX_CLIENT_HELLO - 4));
      const wire = oneByteRecords(hello);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const cpuBefore = process.cpuUsage();
      const { result: alert, maxDelayMs } = await eventLoopDelay(async () => {
        const [, alert] = await Promise.all([
          conn.write(wire).then(async function writeAll(n): Promise<void> {
            if (n < wire.length) return writeAll(n + await conn.write(wire.subarray(n)));
          }),
          readAlert(conn),
        ]);
        return alert;
      });
      const cpu = process.cpuUsage(cpuBefore);
      conn.close();
      // The whole message was reassembled, then found not to be a ClientHello.
      equal(alert, ALERT.decode_error);
      console.log(
        `${hello.length} records of 1 byte: event loop held at most ${maxDelayMs.toFixed(1)} ms, ` +
          `process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms`,
      );
      // Unloaded, the loop waits a few ms (it gets a turn every 256 records); the bound leaves
      // room for a machine shared with other work. Quadratic reassembly held it 400 ms and more.
      ok(maxDelayMs < 200, `event loop held ${maxDelayMs} ms`);
      await server.waitFor(1);
    },
  );

  await t.step("a ClientHello declaring more than 64 KiB is refused at its header", async () => {
    await using server = new EchoServer(serverConfig());
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await conn.write(record(22, handshakeStart(1, 256 * 1024, new Uint8Array(100))));
    equal(await readAlert(conn), ALERT.illegal_parameter);
    conn.close();
  });

  await t.step("the shared buffer budget: past it, a connection is refused", async () => {
    const budget = new HandshakeBufferBudget(200 * 1024);
    await using server = new EchoServer(serverConfig({ handshakeBufferBudget: budget }));
    const declared = 60_000;
    const holders: Deno.Conn[] = [];
    for (let i = 0; i < 3; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(record(22, handshakeStart(1, declared, new Uint8Array(10))));
      holders.push(conn);
    }
    // Each holds its declared length until the message completes or the connection ends.
    for (let i = 0; i < 100 && budget.used < 3 * (4 + declared); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    equal(budget.used, 3 * (4 + declared));
    const fourth = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await fourth.write(record(22, handshakeStart(1, declared, new Uint8Array(10))));
    equal(await readAlert(fourth), ALERT.internal_error);
    equal(budget.refusals, 1);
    fourth.close();
    for (const c of holders) c.close();
    await server.waitFor(4);
    equal(budget.used, 0, "closed connections give their bytes back");
  });

  await t.step("a KeyUpdate flood ends the connection with unexpected_message", async () => {
    await using server = new EchoServer(serverConfig());
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const tls = await connectTls(tcp, { serverName: "localhost", trustAnchors: [pki.rootDer] });
    const writer = tls.writable.getWriter();
    // Within the burst: answered and echoed.
    for (let i = 0; i < KEY_UPDATE_BURST - 1; i++) await tls.keyUpdate(true);
    await writer.write(new Uint8Array([1, 2, 3]));
    equal((await readExactly(tls.readable, 3)).length, 3);
    // Past it: the server ends the connection, without holding the event loop meanwhile.
    const { result: error, maxDelayMs } = await eventLoopDelay(async () => {
      for (let i = 0; i < 50; i++) await tls.keyUpdate(true).catch(() => {});
      await writer.write(new Uint8Array([4])).catch(() => {});
      try {
        await readExactly(tls.readable, 1_000_000);
      } catch (e) {
        return e;
      }
    });
    ok(maxDelayMs < 200, `event loop held ${maxDelayMs} ms`);
    ok(error instanceof TlsError, String(error));
    equal(error.alert, "unexpected_message");
    writer.releaseLock();
    await tls.close();
  });
});
