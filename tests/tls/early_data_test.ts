/**
 * Early data is refused cleanly (RFC 8446 §4.2.10): a client that resumes with a real ticket and
 * offers early_data, then sends 0-RTT records, gets a 1-RTT handshake without early_data in
 * EncryptedExtensions; the server skips the 0-RTT records (also those sent before a
 * HelloRetryRequest), never delivers them, and aborts with unexpected_message past its limit.
 *
 * The client is built here from qsign's own codec, key schedule and record layer, because
 * qsign's client never sends early data.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { getCryptoProvider } from "../../src/crypto/index.ts";
import { type CipherSuite, suiteById } from "../../src/tls/cipher_suites.ts";
import { concat, equalBytes } from "../../src/tls/codec/bytes.ts";
import {
  ContentType,
  ExtensionType,
  HandshakeType,
  PSK_DHE_KE,
  TLS13,
} from "../../src/tls/codec/constants.ts";
import {
  bindersListLength,
  decodeCookie,
  decodeServerKeyShare,
  decodeU16,
  encodeClientKeyShares,
  encodeClientVersions,
  encodeCookie,
  encodeOfferedPsks,
  encodePskModes,
  encodeU16List,
  type Extension,
  findExtension,
} from "../../src/tls/codec/extensions.ts";
import {
  decodeEncryptedExtensions,
  decodeServerHello,
  encodeClientHello,
  encodeFinished,
} from "../../src/tls/codec/messages.ts";
import { GROUPS } from "../../src/tls/groups.ts";
import { deriveSecret, finishedMac, KeySchedule } from "../../src/tls/key_schedule.ts";
import { RecordLayer } from "../../src/tls/record.ts";
import { offeredSchemes } from "../../src/tls/sigschemes.ts";
import { type ClientSession, MemorySessionCache, TicketKeys } from "../../src/tls/tickets.ts";
import { Transcript } from "../../src/tls/transcript.ts";
import { tempDir } from "../support/env.ts";
import { makePki } from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

const groupNamed = (name: string) => GROUPS.find((g) => g.name === name)!;

/** What the hand-built client saw. */
interface EarlyDataOutcome {
  helloRetry: boolean;
  pskAccepted: boolean;
  earlyDataAccepted: boolean;
  /** Every application byte the server sent before its close_notify. */
  received: Uint8Array;
}

/**
 * A ClientHello offering `session` for resumption, with a valid binder over `transcript` (the
 * second ClientHello repeats the first one's `random`, RFC 8446 §4.1.2).
 */
async function clientHello(
  suite: CipherSuite,
  session: ClientSession,
  transcript: Transcript,
  extensions: Extension[],
  random: Uint8Array,
): Promise<Uint8Array> {
  const age = (Date.now() - session.receivedMs + session.ageAdd) >>> 0;
  const hello = encodeClientHello({
    random,
    legacySessionId: new Uint8Array(32),
    cipherSuites: [suite.id],
    extensions: [
      ...extensions,
      encodeOfferedPsks([{ identity: session.ticket, obfuscatedTicketAge: age }], [
        new Uint8Array(suite.hashLength),
      ]),
    ],
  });
  const truncated = hello.subarray(0, hello.length - bindersListLength([suite.hashLength]));
  const binderKey = await (await KeySchedule.start(suite, session.psk)).binderKey();
  hello.set(
    await finishedMac(suite, binderKey, await transcript.hash(suite, truncated)),
    hello.length - suite.hashLength,
  );
  return hello;
}

/**
 * Resumes `session` at `port` offering early_data, sends `earlyBytes` of 0-RTT application data
 * right after the first ClientHello (in records of at most 16 KiB), finishes the handshake,
 * sends `message`, then close_notify, and collects what the server sends back.
 */
async function offerEarlyData(
  port: number,
  session: ClientSession,
  options: { share: string; earlyBytes: number; message: Uint8Array },
): Promise<EarlyDataOutcome> {
  const suite = suiteById(session.suite)!;
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const records = new RecordLayer(tcp);
  records.helloExchanged();
  // 0-RTT records go out through a second record layer on the same socket: the first keeps
  // writing the plaintext hellos.
  const early = new RecordLayer(tcp);
  try {
    const transcript = new Transcript();
    const random = getCryptoProvider().randomBytes(32);
    const groups = [groupNamed("SecP384r1MLKEM1024"), groupNamed("X25519MLKEM768")];
    let share = await groupNamed(options.share).generateShare();
    const common = [
      encodeClientVersions([TLS13]),
      encodeU16List(ExtensionType.supported_groups, groups.map((g) => g.id)),
      encodeU16List(ExtensionType.signature_algorithms, offeredSchemes(false)),
      encodePskModes([PSK_DHE_KE]),
    ];
    const keyShare = () =>
      encodeClientKeyShares([{ group: share.group.id, keyExchange: share.share }]);

    const hello1 = await clientHello(suite, session, transcript, [
      ...common,
      keyShare(),
      { type: ExtensionType.early_data, data: new Uint8Array(0) },
    ], random);
    transcript.add(hello1);
    await records.write(ContentType.handshake, hello1);
    const earlySecret = await getCryptoProvider().hkdfExtract(
      suite.hash,
      new Uint8Array(suite.hashLength),
      session.psk,
    );
    await early.setWriteKeys(
      suite,
      await deriveSecret(suite, earlySecret, "c e traffic", await transcript.hash(suite)),
    );
    const earlyData = new Uint8Array(options.earlyBytes).fill(0x30);
    if (earlyData.length) await early.write(ContentType.application_data, earlyData);

    let sh = await records.readHandshake();
    let serverHello = decodeServerHello(sh.body);
    const helloRetry = serverHello.isRetryRequest;
    if (helloRetry) {
      // A client must not offer early_data again after a HelloRetryRequest (RFC 8446 §4.2.10).
      await transcript.replaceWithMessageHash(suite);
      transcript.add(sh.raw);
      const wanted = decodeU16(findExtension(serverHello.extensions, ExtensionType.key_share)!, "");
      share = await groups.find((g) => g.id === wanted)!.generateShare();
      const cookie = decodeCookie(findExtension(serverHello.extensions, ExtensionType.cookie)!);
      const hello2 = await clientHello(suite, session, transcript, [
        ...common,
        keyShare(),
        encodeCookie(cookie),
      ], random);
      transcript.add(hello2);
      await records.write(ContentType.handshake, hello2);
      sh = await records.readHandshake();
      serverHello = decodeServerHello(sh.body);
    }
    const pskAccepted = findExtension(serverHello.extensions, ExtensionType.pre_shared_key) !==
      undefined;
    const serverShare = decodeServerKeyShare(
      findExtension(serverHello.extensions, ExtensionType.key_share)!,
    );
    transcript.add(sh.raw);
    const schedule = await KeySchedule.start(suite, pskAccepted ? session.psk : undefined);
    await schedule.enterHandshake(await share.complete(serverShare.keyExchange));
    const hs = await schedule.trafficSecrets("hs", await transcript.hash(suite));
    await records.setReadKeys(suite, hs.server);

    // The server's flight up to its Finished (certificates too, should it not resume).
    const ee = await records.readHandshake();
    equal(ee.type, HandshakeType.encrypted_extensions);
    const earlyDataAccepted =
      findExtension(decodeEncryptedExtensions(ee.body), ExtensionType.early_data) !== undefined;
    transcript.add(ee.raw);
    for (;;) {
      const message = await records.readHandshake();
      if (message.type === HandshakeType.finished) {
        const expected = await finishedMac(suite, hs.server, await transcript.hash(suite));
        ok(equalBytes(message.body, expected), "server Finished verifies");
        transcript.add(message.raw);
        break;
      }
      transcript.add(message.raw);
    }
    await schedule.enterMaster();
    const ap = await schedule.trafficSecrets("ap", await transcript.hash(suite));
    await records.setWriteKeys(suite, hs.client);
    await records.write(
      ContentType.handshake,
      encodeFinished(await finishedMac(suite, hs.client, await transcript.hash(suite))),
    );
    await records.setWriteKeys(suite, ap.client);
    await records.setReadKeys(suite, ap.server);

    await records.write(ContentType.application_data, options.message);
    await records.sendAlert("close_notify");
    const received: Uint8Array[] = [];
    for (;;) {
      const incoming = await records.readIncoming();
      if (!incoming) break;
      if (incoming.kind === "data") received.push(incoming.data.slice());
    }
    return { helloRetry, pskAccepted, earlyDataAccepted, received: concat(...received) };
  } finally {
    tcp.close();
  }
}

Deno.test("early data is refused cleanly: 0-RTT skipped, 1-RTT handshake completes", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(dir.path, "mldsa65");
  await using server = new EchoServer({
    certificates: [pki.server],
    clientAuth: "none",
    trustAnchors: [pki.rootDer],
    tickets: TicketKeys.random(),
  });
  const sessionCache = new MemorySessionCache();
  const hello = new TextEncoder().encode("Hello, Q-TLS!");
  /** A fresh ticket from a full qsign handshake (tickets are single-use). */
  const ticket = async () => {
    await qsignEcho(server.port, {
      serverName: "localhost",
      trustAnchors: [pki.rootDer],
      sessionCache,
    }, hello);
    return sessionCache.take(`localhost:${server.port}`)!;
  };
  const message = new TextEncoder().encode("sent after the handshake");
  /** Offers early data with a fresh ticket: what the client saw (or its error), the server's outcome. */
  const attempt = async (share: string, earlyBytes: number) => {
    const session = await ticket();
    const before = server.outcomes.length;
    const client = await offerEarlyData(server.port, session, { share, earlyBytes, message })
      .catch((e: Error) => e);
    const [outcome] = (await server.waitFor(before + 1)).slice(before);
    return { client, outcome };
  };

  await t.step("resumption with 0-RTT records: refused, skipped, 1-RTT data echoed", async () => {
    const { client, outcome } = await attempt("SecP384r1MLKEM1024", 40_000);
    ok(!(client instanceof Error), String(client));
    deepEqual(
      { ...client, received: new TextDecoder().decode(client.received) },
      {
        helloRetry: false,
        pskAccepted: true,
        earlyDataAccepted: false,
        received: "sent after the handshake",
      },
    );
    ok("info" in outcome, String("error" in outcome && outcome.error));
    equal(outcome.info.resumed, true);
    equal(outcome.info.helloRetry, false);
  });

  await t.step("0-RTT sent before a HelloRetryRequest is skipped too", async () => {
    const { client, outcome } = await attempt("X25519MLKEM768", 20_000);
    ok(!(client instanceof Error), String(client));
    deepEqual(
      { ...client, received: [...client.received] },
      { helloRetry: true, pskAccepted: true, earlyDataAccepted: false, received: [...message] },
    );
    ok("info" in outcome, String("error" in outcome && outcome.error));
    equal(outcome.info.helloRetry, true);
    equal(outcome.info.resumed, true);
    equal(outcome.info.group, "SecP384r1MLKEM1024");
  });

  await t.step("more than 64 KiB of 0-RTT data: unexpected_message", async () => {
    const { client, outcome } = await attempt("SecP384r1MLKEM1024", 80_000);
    // The client sees the alert, or a reset if it was still writing when the server closed.
    ok(client instanceof Error, "the handshake should fail");
    ok("error" in outcome);
    equal(outcome.error.alert, "unexpected_message");
    ok(outcome.error.reason.includes("rejected early data"), outcome.error.reason);
  });
});
