/**
 * The client side of the TLS 1.3 handshake as one linear function over a small state object:
 *
 *   ClientHello → [← HelloRetryRequest, ClientHello2] ← ServerHello ← EncryptedExtensions
 *   ← [CertificateRequest] ← Certificate ← CertificateVerify ← Finished (PSK: no certificates)
 *   → [Certificate → CertificateVerify] → Finished
 *
 * NewSessionTickets arrive after the handshake and are handled by the connection (conn.ts).
 */
import "reflect-metadata";
import { getCryptoProvider } from "../crypto/index.ts";
import { TlsAlert } from "./alert.ts";
import { normalizeIp } from "../pki/certificate.ts";
import { type ChosenCertificate, parseCertificate, signerScheme } from "./auth.ts";
import { type CipherSuite, resolveSuites, suiteById } from "./cipher_suites.ts";
import { concat, equalBytes } from "./codec/bytes.ts";
import {
  ContentType,
  ExtensionType,
  HandshakeType,
  PSK_DHE_KE,
  SSL3,
  TLS13,
} from "./codec/constants.ts";
import {
  bindersListLength,
  checkExtensionRules,
  decodeAlpn,
  decodeCertificateAuthorities,
  decodeCookie,
  decodeServerKeyShare,
  decodeU16,
  decodeU16List,
  encodeAlpn,
  encodeClientKeyShares,
  encodeClientVersions,
  encodeCookie,
  encodeOfferedPsks,
  encodePskModes,
  encodeServerName,
  encodeU16,
  encodeU16List,
  type Extension,
  findExtension,
} from "./codec/extensions.ts";
import {
  decodeCertificateRequest,
  decodeEncryptedExtensions,
  decodeServerHello,
  encodeClientHello,
  type HandshakeMessage,
} from "./codec/messages.ts";
import type { TlsClientConfig } from "./config.ts";
import {
  type ClientKeyShare,
  defaultKeyShareHints,
  groupName,
  type KeyExchangeGroup,
  type KeyShareHints,
  resolveGroups,
} from "./groups.ts";
import { KeySchedule } from "./key_schedule.ts";
import type { RecordLayer } from "./record.ts";
import type { HandshakeResult } from "./server.ts";
import { offeredCertSchemes, schemeName, type SignatureScheme } from "./sigschemes.ts";
import type { ClientSession } from "./tickets.ts";
import {
  certificateMessages,
  checkFinished,
  finishedMessage,
  type HandshakeContext,
  type PeerAuthentication,
  pskBinder,
  readMessage,
  readPeerAuthentication,
} from "./steps.ts";
import { Transcript } from "./transcript.ts";

/** The body of a change_cipher_spec record. */
const CHANGE_CIPHER_SPEC = Uint8Array.of(1);

/** The cache key for a server's tickets. */
export function sessionKey(config: TlsClientConfig, port?: number): string {
  return `${config.serverName ?? ""}:${port ?? ""}`;
}

interface ClientState {
  readonly config: TlsClientConfig;
  readonly records: RecordLayer;
  readonly transcript: Transcript;
  readonly suites: CipherSuite[];
  readonly groups: KeyExchangeGroup[];
  readonly schemes: SignatureScheme[];
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  /** Middlebox compatibility mode: one change_cipher_spec before our second flight. */
  readonly compat: boolean;
  /** Extension types our ClientHello carried: what the server may answer (RFC 8446 §4.2). */
  readonly solicited: Set<number>;
  /** Where the group of a HelloRetryRequest is remembered, and under which key. */
  readonly hints: KeyShareHints;
  readonly hintKey: string;
  changeCipherSpecSent: boolean;
  share: ClientKeyShare;
  session?: ClientSession;
  cookie?: Uint8Array;
  suite?: CipherSuite;
  helloRetry: boolean;
  /** The group a HelloRetryRequest asked for, remembered once the handshake gets through. */
  retryGroup?: number;
}

/**
 * Runs the client handshake, offering `schemes` as signature_algorithms (`resolveSchemes` of
 * the config, checked by the caller). `session` is a ticket to offer for resumption (taken from
 * the cache by the caller); `peer` is the server's address, which with the server name keys the
 * remembered HelloRetryRequest group. Throws TlsAlert (send it), PeerAlert or TransportClosed.
 */
export async function clientHandshake(
  records: RecordLayer,
  config: TlsClientConfig,
  schemes: SignatureScheme[],
  session?: ClientSession,
  peer = "",
): Promise<HandshakeResult> {
  const startMs = Date.now();
  const p = getCryptoProvider();
  const groups = resolveGroups(config.groups, config.allowClassical);
  const compat = config.middleboxCompat ?? true;
  const hints = config.keyShareHints ?? defaultKeyShareHints;
  const hintKey = `${config.serverName ?? ""}|${peer}`;
  const hinted = groups.find((g) => g.id === hints.get(hintKey));
  const cs: ClientState = {
    config,
    records,
    transcript: new Transcript(),
    suites: resolveSuites(config.cipherSuites),
    groups,
    schemes,
    random: p.randomBytes(32),
    sessionId: compat ? p.randomBytes(32) : new Uint8Array(0),
    compat,
    solicited: new Set(),
    hints,
    hintKey,
    changeCipherSpecSent: false,
    share: await (hinted ?? groups[0]).generateShare(),
    session,
    helloRetry: false,
  };
  const { transcript } = cs;

  // 1. ClientHello; on HelloRetryRequest, a second one with the requested share.
  records.helloExchanged();
  await sendClientHello(cs);
  let sh = await readServerHello(cs);
  if (sh.isRetryRequest) {
    await handleRetry(cs, sh);
    await sendCompatChangeCipherSpec(cs);
    await sendClientHello(cs);
    sh = await readServerHello(cs);
    if (sh.isRetryRequest) throw new TlsAlert("unexpected_message", "second HelloRetryRequest");
  }
  const suite = cs.suite!;

  // 2. ServerHello: the group and the PSK, then the handshake keys.
  const keyShare = findExtension(sh.extensions, ExtensionType.key_share);
  if (!keyShare) throw new TlsAlert("missing_extension", "ServerHello lacks key_share");
  const serverShare = decodeServerKeyShare(keyShare);
  if (serverShare.group !== cs.share.group.id) {
    throw new TlsAlert("illegal_parameter", `server answered ${groupName(serverShare.group)}`);
  }
  const pskExt = findExtension(sh.extensions, ExtensionType.pre_shared_key);
  let resumed: ClientSession | undefined;
  if (pskExt) {
    if (!cs.session || decodeU16(pskExt, "pre_shared_key") !== 0) {
      throw new TlsAlert("illegal_parameter", "server selected a PSK we did not offer");
    }
    if (suiteById(cs.session.suite)?.hash !== suite.hash) {
      throw new TlsAlert("illegal_parameter", "server resumed with a suite of another hash");
    }
    resumed = cs.session;
  }
  const sharedSecret = await cs.share.complete(serverShare.keyExchange);
  transcript.add(sh.message.raw);
  const schedule = KeySchedule.start(suite, resumed?.psk);
  schedule.enterHandshake(sharedSecret);
  const hsSecrets = schedule.trafficSecrets("hs", transcript.hash(suite));
  await records.setReadKeys(suite, hsSecrets.server);
  // Our write key now, so an alert about the server's flight is protected like the flight
  // (RFC 8446 §5: alerts after ServerHello are encrypted); with the compatibility
  // change_cipher_spec held before whatever we write first.
  await sendCompatChangeCipherSpec(cs);
  await records.setWriteKeys(suite, hsSecrets.client);
  if (cs.retryGroup !== undefined) cs.hints.remember(cs.hintKey, cs.retryGroup);

  // 3. EncryptedExtensions.
  const ctx: HandshakeContext = { records, transcript, suite };
  const ee = await readMessage(records, HandshakeType.encrypted_extensions);
  const alpn = checkEncryptedExtensions(cs, decodeEncryptedExtensions(ee.body));
  transcript.add(ee.raw);

  // 4. The server's authentication (not on resumption), then its Finished.
  let certRequest: { schemes: number[]; authorities?: Uint8Array[] } | undefined;
  let server: PeerAuthentication | undefined;
  let message = await records.readHandshake();
  if (!resumed) {
    if (message.type === HandshakeType.certificate_request) {
      certRequest = readCertificateRequest(message);
      transcript.add(message.raw);
      message = await records.readHandshake();
    }
    server = await readPeerAuthentication(
      ctx,
      message,
      config,
      "client",
      cs.schemes,
      cs.solicited,
      config.serverName,
    );
    if (!server) throw new TlsAlert("decode_error", "server sent no certificate");
    message = await records.readHandshake();
  }
  checkFinished(ctx, message, hsSecrets.server, "server");
  schedule.enterMaster();
  const apSecrets = schedule.trafficSecrets("ap", transcript.hash(suite));

  // 5. Our flight: [Certificate, CertificateVerify,] Finished.
  let ours: ChosenCertificate | undefined;
  const flight: Uint8Array[] = [];
  if (certRequest) {
    const key = config.certificate;
    const scheme = key && signerScheme(key, certRequest.schemes);
    ours = key && scheme !== undefined ? { key, scheme } : undefined;
    flight.push(...await certificateMessages(ctx, "client", ours));
  }
  flight.push(finishedMessage(ctx, hsSecrets.client));
  await records.write(ContentType.handshake, concat(...flight));
  await records.setWriteKeys(suite, apSecrets.client);
  await records.setReadKeys(suite, apSecrets.server);
  records.handshakeDone();

  const peerChain = server?.chain ?? resumed?.peerCertificates ?? [];
  return {
    suite,
    readSecret: apSecrets.server,
    writeSecret: apSecrets.client,
    resumptionMasterSecret: schedule.resumptionMasterSecret(transcript.hash(suite)),
    info: {
      version: "TLSv1.3",
      role: "client",
      cipherSuite: suite.name,
      group: cs.share.group.name,
      signatureScheme: ours && schemeName(ours.scheme),
      peerSignatureScheme: server && schemeName(server.scheme),
      resumed: resumed !== undefined,
      helloRetry: cs.helloRetry,
      alpn,
      serverName: config.serverName,
      peerCertificates: peerChain,
      peerLeaf: server?.peer.leaf ??
        (peerChain.length ? parseCertificate(peerChain[0]) : undefined),
      timings: { startMs, handshakeMs: Date.now() - startMs },
    },
  };
}

/** Builds, records and sends the (first or second) ClientHello, with a PSK binder if resuming. */
async function sendClientHello(cs: ClientState): Promise<void> {
  const { config, transcript } = cs;
  const extensions: Extension[] = [
    encodeClientVersions([TLS13]),
    encodeU16List(ExtensionType.supported_groups, cs.groups.map((g) => g.id)),
    encodeClientKeyShares([{ group: cs.share.group.id, keyExchange: cs.share.share }]),
    encodeU16List(ExtensionType.signature_algorithms, cs.schemes),
    encodeU16List(
      ExtensionType.signature_algorithms_cert,
      offeredCertSchemes(config.requirePqAuth ?? false),
    ),
  ];
  // SNI carries host names only (RFC 6066 §3).
  if (config.serverName && normalizeIp(config.serverName) === undefined) {
    extensions.push(encodeServerName(config.serverName));
  }
  if (config.alpn?.length) extensions.push(encodeAlpn(config.alpn));
  if (config.recordSizeLimit !== undefined) {
    extensions.push(encodeU16(ExtensionType.record_size_limit, config.recordSizeLimit));
  }
  if (cs.cookie) extensions.push(encodeCookie(cs.cookie));
  for (const e of extensions) cs.solicited.add(e.type);
  if (config.sessionCache) extensions.push(encodePskModes([PSK_DHE_KE]));

  const session = cs.session;
  const sessionSuite = session && suiteById(session.suite);
  // After a HelloRetryRequest the PSK must suit the suite the server chose.
  const offerPsk = session && sessionSuite && (!cs.suite || cs.suite.hash === sessionSuite.hash);
  if (!offerPsk) cs.session = undefined;
  let binderLength = 0;
  if (offerPsk) {
    binderLength = sessionSuite.hashLength;
    const age = (Date.now() - session.receivedMs + session.ageAdd) >>> 0;
    extensions.push(
      encodeOfferedPsks([{ identity: session.ticket, obfuscatedTicketAge: age }], [
        new Uint8Array(binderLength),
      ]),
    );
  }
  if (offerPsk) cs.solicited.add(ExtensionType.pre_shared_key);
  const hello = encodeClientHello({
    random: cs.random,
    legacySessionId: cs.sessionId,
    cipherSuites: cs.suites.map((s) => s.id),
    extensions,
  });
  if (offerPsk) {
    const truncated = hello.subarray(0, hello.length - bindersListLength([binderLength]));
    const binder = pskBinder(sessionSuite, session.psk, transcript, truncated);
    hello.set(binder, hello.length - binderLength);
  }
  transcript.add(hello);
  await cs.records.write(ContentType.handshake, hello);
}

/**
 * Middlebox compatibility (RFC 8446 D.4): one change_cipher_spec right before our second flight
 * (the second ClientHello or the encrypted flight, whichever comes first). Held, so it leaves
 * with that flight, or with an alert if the server's flight fails.
 */
async function sendCompatChangeCipherSpec(cs: ClientState): Promise<void> {
  if (!cs.compat || cs.changeCipherSpecSent) return;
  cs.changeCipherSpecSent = true;
  await cs.records.hold(ContentType.change_cipher_spec, CHANGE_CIPHER_SPEC);
}

/** Reads a ServerHello or HelloRetryRequest and checks what both must get right. */
async function readServerHello(cs: ClientState) {
  const message = await readMessage(cs.records, HandshakeType.server_hello);
  const sh = decodeServerHello(message.body);
  if (sh.legacyVersion <= SSL3) {
    throw new TlsAlert(
      "protocol_version",
      `ServerHello legacy_version 0x${sh.legacyVersion.toString(16).padStart(4, "0")}`,
    );
  }
  const version = findExtension(sh.extensions, ExtensionType.supported_versions);
  if (!version) throw new TlsAlert("protocol_version", "server does not speak TLS 1.3");
  checkExtensionRules(sh.isRetryRequest ? "HRR" : "SH", sh.extensions, cs.solicited);
  if (decodeU16(version, "supported_versions") !== TLS13) {
    throw new TlsAlert("illegal_parameter", "server selected a version we did not offer");
  }
  if (!equalBytes(sh.legacySessionId, cs.sessionId)) {
    throw new TlsAlert("illegal_parameter", "server did not echo legacy_session_id");
  }
  const suite = cs.suites.find((s) => s.id === sh.cipherSuite);
  if (!suite || (cs.suite && cs.suite !== suite)) {
    throw new TlsAlert(
      "illegal_parameter",
      `server selected cipher suite 0x${sh.cipherSuite.toString(16)}`,
    );
  }
  cs.suite = suite;
  return { ...sh, message };
}

/**
 * Applies a HelloRetryRequest (RFC 8446 §4.1.4): the transcript, the cookie, and a share for
 * the requested group, which must be one we support and not the one we shared already. One
 * that would change nothing in the ClientHello (neither key_share nor cookie) is
 * illegal_parameter; a cookie alone is a change.
 */
async function handleRetry(
  cs: ClientState,
  hrr: Awaited<ReturnType<typeof readServerHello>>,
): Promise<void> {
  const keyShare = findExtension(hrr.extensions, ExtensionType.key_share);
  const cookie = findExtension(hrr.extensions, ExtensionType.cookie);
  if (!keyShare && !cookie) {
    throw new TlsAlert("illegal_parameter", "HelloRetryRequest would not change the ClientHello");
  }
  cs.cookie = cookie && decodeCookie(cookie);
  if (keyShare) {
    const groupId = decodeU16(keyShare, "key_share");
    const group = cs.groups.find((g) => g.id === groupId);
    if (!group) {
      throw new TlsAlert(
        "illegal_parameter",
        `HelloRetryRequest asks for ${groupName(groupId)}, which we did not offer`,
      );
    }
    if (group === cs.share.group) {
      throw new TlsAlert(
        "illegal_parameter",
        `HelloRetryRequest asks for ${group.name}, whose share we sent`,
      );
    }
    cs.share = await group.generateShare();
    cs.retryGroup = group.id;
  }
  cs.helloRetry = true;
  cs.transcript.replaceWithMessageHash(cs.suite!);
  cs.transcript.add(hrr.message.raw);
}

/** EncryptedExtensions (RFC 8446 §4.3.1): each must answer ours; the ALPN chosen. */
function checkEncryptedExtensions(cs: ClientState, extensions: Extension[]): string | undefined {
  checkExtensionRules("EE", extensions, cs.solicited);
  const serverName = findExtension(extensions, ExtensionType.server_name);
  if (serverName?.length) {
    throw new TlsAlert("decode_error", "server_name in EncryptedExtensions is not empty");
  }
  const limit = findExtension(extensions, ExtensionType.record_size_limit);
  if (limit) {
    const value = decodeU16(limit, "record_size_limit");
    if (value < 64) throw new TlsAlert("illegal_parameter", `record_size_limit ${value}`);
    cs.records.peerMaxFragment = Math.min(16384, value - 1);
    // The server took up ours (solicited, so we sent one): its records after this obey it.
    cs.records.receiveLimit = cs.config.recordSizeLimit!;
  }
  const alpnExt = findExtension(extensions, ExtensionType.application_layer_protocol_negotiation);
  if (!alpnExt) return undefined;
  const chosen = decodeAlpn(alpnExt);
  if (chosen.length !== 1 || !cs.config.alpn?.includes(chosen[0])) {
    throw new TlsAlert(
      "illegal_parameter",
      `server chose ALPN ${chosen.join(",")} we did not offer`,
    );
  }
  return chosen[0];
}

function readCertificateRequest(msg: HandshakeMessage) {
  const cr = decodeCertificateRequest(msg.body);
  checkExtensionRules("CR", cr.extensions);
  if (cr.context.length) {
    throw new TlsAlert("illegal_parameter", "certificate_request_context not empty");
  }
  const schemes = findExtension(cr.extensions, ExtensionType.signature_algorithms);
  if (!schemes) {
    throw new TlsAlert("missing_extension", "CertificateRequest lacks signature_algorithms");
  }
  const authorities = findExtension(cr.extensions, ExtensionType.certificate_authorities);
  return {
    schemes: decodeU16List(schemes, "signature_algorithms"),
    authorities: authorities && decodeCertificateAuthorities(authorities),
  };
}
