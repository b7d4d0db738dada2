/**
 * Malformed peer input ends that connection with the RFC alert and nothing else: no exception
 * escapes, no internal_error, and the server goes on serving well-formed clients.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { ALERTS } from "../../src/tls/alert.ts";
import { TlsError } from "../../src/tls/alert.ts";
import { ExtensionType } from "../../src/tls/codec/constants.ts";
import {
  encodeClientKeyShares,
  encodeClientVersions,
  encodeU16List,
} from "../../src/tls/codec/extensions.ts";
import { encodeClientHello } from "../../src/tls/codec/messages.ts";
import { connectTls } from "../../src/tls/conn.ts";
import type { TlsServerConfig } from "../../src/tls/config.ts";
import { GROUPS } from "../../src/tls/groups.ts";
import { tempDir } from "../support/env.ts";
import { makePki, mutualTlsClient, mutualTlsServer, type TestPki } from "./support/pki.ts";
import { EchoServer, qsignEcho, readExactly } from "./support/qsign.ts";

/** Sends raw bytes, half-closes, and returns everything the server answered. */
async function rawExchange(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await tcp.write(bytes);
    await tcp.closeWrite();
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await tcp.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    return new Uint8Array(chunks.flatMap((c) => [...c]));
  } finally {
    tcp.close();
  }
}

function record(type: number, body: Uint8Array, length = body.length): Uint8Array {
  return new Uint8Array([type, 3, 1, length >> 8, length & 0xff, ...body]);
}

/** A plaintext fatal alert record as the server sends it. */
function alertRecord(name: keyof typeof ALERTS): number[] {
  return [21, 3, 3, 0, 2, 2, ALERTS[name]];
}

/**
 * A well-formed ClientHello offering SecP384r1MLKEM1024 with a real key share (or, with
 * `shareLength`, a share of that many bytes).
 */
async function validClientHello(shareLength?: number): Promise<Uint8Array> {
  const group = GROUPS[0];
  const share = await group.generateShare();
  return encodeClientHello({
    random: crypto.getRandomValues(new Uint8Array(32)),
    legacySessionId: new Uint8Array(32),
    cipherSuites: [0x1302],
    extensions: [
      encodeClientVersions([0x0304]),
      encodeU16List(ExtensionType.supported_groups, [group.id]),
      encodeClientKeyShares([{
        group: group.id,
        keyExchange: shareLength ? share.share.subarray(0, shareLength) : share.share,
      }]),
      encodeU16List(ExtensionType.signature_algorithms, [0x0905]),
    ],
  });
}

function serverConfig(pki: TestPki): TlsServerConfig {
  return {
    ...mutualTlsServer(pki),
    handshakeTimeoutMs: 2000,
  };
}

Deno.test("malformed records and handshakes get the RFC alert", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(dir.path, "mldsa65");
  await using server = new EchoServer(serverConfig(pki));
  const hello = await validClientHello();

  const cases: [string, Uint8Array, keyof typeof ALERTS][] = [
    [
      "not TLS at all (HTTP)",
      new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
      "unexpected_message",
    ],
    ["record longer than 2^14 + 256", record(22, new Uint8Array(0), 0x4801), "record_overflow"],
    [
      "ClientHello cut short",
      record(22, new Uint8Array([1, 0, 0, 56, ...hello.subarray(4, 60)])),
      "decode_error",
    ],
    ["application data before the handshake", record(23, new Uint8Array(10)), "unexpected_message"],
    [
      "a ServerHello sent to the server",
      record(22, new Uint8Array([2, 0, 0, 2, 3, 3])),
      "unexpected_message",
    ],
    ["empty handshake record", record(22, new Uint8Array(0)), "unexpected_message"],
    ["malformed alert record", record(21, new Uint8Array([2])), "decode_error"],
    [
      "key share of the wrong length",
      record(22, await validClientHello(100)),
      "illegal_parameter",
    ],
  ];
  for (const [name, bytes, alert] of cases) {
    await t.step(name, async () => {
      const before = server.outcomes.length;
      const answer = await rawExchange(server.port, bytes);
      const outcome = (await server.waitFor(before + 1))[before];
      ok("error" in outcome);
      equal(outcome.error.alert, alert, outcome.error.message);
      equal(outcome.error.sent, true);
      deepEqual([...answer], alertRecord(alert));
    });
  }

  await t.step(
    "200 fuzzed ClientHellos: an alert or a closed connection, never internal_error",
    async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 200; i++) {
        const mutated = hello.slice(
          0,
          i % 3 === 0 ? 4 + Math.floor(Math.random() * (hello.length - 4)) : hello.length,
        );
        const flips = 1 + (i % 4);
        for (let f = 0; f < flips; f++) {
          mutated[Math.floor(Math.random() * mutated.length)] ^= 1 +
            Math.floor(Math.random() * 255);
        }
        const before = server.outcomes.length;
        await rawExchange(server.port, record(22, mutated));
        const outcome = (await server.waitFor(before + 1))[before];
        const verdict = "error" in outcome ? outcome.error.alert : "handshake completed";
        ok(verdict !== "internal_error" && verdict !== "timeout", `fuzz case ${i}: ${verdict}`);
        seen.add(verdict);
      }
      ok(seen.has("decode_error") || seen.has("illegal_parameter"), [...seen].join(", "));
    },
  );

  await t.step("the server still serves a well-formed client", async () => {
    const payload = new TextEncoder().encode("Hello, Q-TLS!");
    const { echo } = await qsignEcho(server.port, mutualTlsClient(pki), payload);
    deepEqual(echo, payload);
  });
});

/** A TCP connection that can corrupt the next record it writes. */
class CorruptingConn {
  corruptNext = false;
  constructor(readonly inner: Deno.Conn) {}
  get remoteAddr() {
    return this.inner.remoteAddr;
  }
  read(p: Uint8Array) {
    return this.inner.read(p);
  }
  write(p: Uint8Array) {
    if (this.corruptNext) {
      this.corruptNext = false;
      p = p.slice();
      p[p.length - 1] ^= 0x80;
    }
    return this.inner.write(p);
  }
  close() {
    this.inner.close();
  }
}

Deno.test("a tampered record gets bad_record_mac; a silent client times out", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(dir.path, "mldsa65");
  await using server = new EchoServer({ ...serverConfig(pki), handshakeTimeoutMs: 300 });

  await t.step("bad_record_mac", async () => {
    const conn = new CorruptingConn(
      await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
    );
    const tls = await connectTls(conn as unknown as Deno.Conn, mutualTlsClient(pki));
    conn.corruptNext = true;
    const writer = tls.writable.getWriter();
    await writer.write(new Uint8Array(100));
    writer.releaseLock();
    const error = await readExactly(tls.readable, 100).then(() => undefined, (e) => e);
    ok(error instanceof TlsError, String(error));
    equal(error.alert, "bad_record_mac");
    equal(error.sent, false);
    await tls.close();
  });

  await t.step("handshake timeout", async () => {
    const before = server.outcomes.length;
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const outcome = (await server.waitFor(before + 1))[before];
    tcp.close();
    ok("error" in outcome);
    equal(outcome.error.alert, "timeout");
  });
});
