/**
 * The server side of the TLS 1.3 handshake (RFC 8446 §2, §4) as one linear function over a
 * small state object, in the manner of Go's handshake_server_tls13.go:
 *
 *   ClientHello → [HelloRetryRequest → ClientHello] → ServerHello → EncryptedExtensions →
 *   [CertificateRequest] → Certificate → CertificateVerify → Finished (or PSK: no certificates)
 *   ← [Certificate ← CertificateVerify] ← Finished → NewSessionTicket
 *
 * Every problem with the client's input throws `TlsAlert`; conn.ts sends it and closes.
 */
import "reflect-metadata";
import { getCryptoProvider } from "../crypto/index.ts";
import { TlsAlert } from "./alert.ts";
import { type ChosenCertificate, parseCertificate, selectCertificate } from "./auth.ts";
import { type CipherSuite, resolveSuites, suiteById, suiteName } from "./cipher_suites.ts";
import { concat, equalBytes } from "./codec/bytes.ts";
import {
  ContentType,
  ExtensionType,
  HandshakeType,
  HELLO_RETRY_REQUEST_RANDOM,
  PSK_DHE_KE,
  SSL3,
  TLS13,
} from "./codec/constants.ts";
import {
  checkExtensionRules,
  decodeAlpn,
  decodeClientKeyShares,
  decodeClientVersions,
  decodeCookie,
  decodeOfferedPsks,
  decodePskModes,
  decodeServerName,
  decodeU16,
  decodeU16List,
  encodeAlpn,
  encodeCertificateAuthorities,
  encodeCookie,
  encodeServerKeyShare,
  encodeU16,
  encodeU16List,
  type Extension,
  findExtension,
  type KeyShareEntry,
  type OfferedPsks,
} from "./codec/extensions.ts";
import {
  decodeClientHello,
  encodeCertificateRequest,
  encodeEncryptedExtensions,
  encodeNewSessionTicket,
  encodeServerHello,
  type HandshakeMessage,
} from "./codec/messages.ts";
import type { HandshakeInfo, PeerIdentity, TlsServerConfig } from "./config.ts";
import type { ClientOffer } from "./offer.ts";
import { groupById, groupName, type KeyExchangeGroup, resolveGroups } from "./groups.ts";
import { KeySchedule, resumptionPsk } from "./key_schedule.ts";
import type { RecordLayer } from "./record.ts";
import { offeredCertSchemes, offeredSchemes, schemeName } from "./sigschemes.ts";
import {
  certificateMessages,
  checkFinished,
  finishedMessage,
  type HandshakeContext,
  ofType,
  type PeerAuthentication,
  pskBinder,
  readMessage,
  readPeerAuthentication,
} from "./steps.ts";
import {
  encodeAuthentication,
  fullHandshakeAuthentication,
  peerIdentity,
  resumedAuthentication,
  type SessionAuthentication,
  ticketLifetimeSeconds,
} from "./resumption.ts";
import {
  decodeServerSession,
  encodeServerSession,
  type ServerSession,
  ticketAgeAcceptable,
} from "./tickets.ts";
import { Transcript } from "./transcript.ts";

/** What a finished handshake hands to the connection. */
export interface HandshakeResult {
  info: HandshakeInfo;
  suite: CipherSuite;
  /** Application traffic secrets, for KeyUpdate. */
  readSecret: Uint8Array;
  writeSecret: Uint8Array;
  /** Client side: for turning NewSessionTickets into PSKs. */
  resumptionMasterSecret?: Uint8Array;
}

/** Filled in as the handshake goes, so a failure can still report what the client offered. */
export interface ServerProgress {
  clientOffer?: ClientOffer;
}

/** A ClientHello with the extensions the server reads, decoded. */
interface ClientHelloView {
  message: HandshakeMessage;
  legacyVersion: number;
  random: Uint8Array;
  legacySessionId: Uint8Array;
  cipherSuites: number[];
  extensions: Extension[];
  versions?: number[];
  groups?: number[];
  shares?: KeyShareEntry[];
  schemes?: number[];
  certSchemes?: number[];
  serverName?: string;
  alpn?: string[];
  pskModes?: number[];
  psks?: OfferedPsks;
  cookie?: Uint8Array;
  recordSizeLimit?: number;
  earlyData: boolean;
}

function viewClientHello(message: HandshakeMessage): ClientHelloView {
  const ch = decodeClientHello(ofType(message, HandshakeType.client_hello).body);
  // SSL 3.0 and older (or garbage) in legacy_version: refused whatever else is offered (D.5).
  if (ch.legacyVersion <= SSL3) {
    throw new TlsAlert(
      "protocol_version",
      `ClientHello legacy_version 0x${ch.legacyVersion.toString(16).padStart(4, "0")}`,
    );
  }
  checkExtensionRules("CH", ch.extensions);
  const ext = (type: number) => findExtension(ch.extensions, type);
  const opt = <T>(type: number, decode: (d: Uint8Array) => T) => {
    const data = ext(type);
    return data === undefined ? undefined : decode(data);
  };
  const psks = opt(ExtensionType.pre_shared_key, decodeOfferedPsks);
  if (psks && ch.extensions.at(-1)?.type !== ExtensionType.pre_shared_key) {
    throw new TlsAlert("illegal_parameter", "pre_shared_key is not the last extension");
  }
  const recordSizeLimit = opt(
    ExtensionType.record_size_limit,
    (d) => decodeU16(d, "record_size_limit"),
  );
  if (recordSizeLimit !== undefined && recordSizeLimit < 64) {
    throw new TlsAlert("illegal_parameter", `record_size_limit ${recordSizeLimit} below 64`);
  }
  return {
    message,
    legacyVersion: ch.legacyVersion,
    random: ch.random,
    legacySessionId: ch.legacySessionId,
    cipherSuites: ch.cipherSuites,
    extensions: ch.extensions,
    versions: opt(ExtensionType.supported_versions, decodeClientVersions),
    groups: opt(ExtensionType.supported_groups, (d) => decodeU16List(d, "supported_groups")),
    shares: opt(ExtensionType.key_share, decodeClientKeyShares),
    schemes: opt(
      ExtensionType.signature_algorithms,
      (d) => decodeU16List(d, "signature_algorithms"),
    ),
    certSchemes: opt(
      ExtensionType.signature_algorithms_cert,
      (d) => decodeU16List(d, "signature_algorithms_cert"),
    ),
    serverName: opt(ExtensionType.server_name, decodeServerName),
    alpn: opt(ExtensionType.application_layer_protocol_negotiation, decodeAlpn),
    pskModes: opt(ExtensionType.psk_key_exchange_modes, decodePskModes),
    psks,
    cookie: opt(ExtensionType.cookie, decodeCookie),
    recordSizeLimit,
    earlyData: ext(ExtensionType.early_data) !== undefined,
  };
}

function describeOffer(ch: ClientHelloView): ClientOffer {
  const groups = ch.groups ?? [];
  return {
    groups: groups.map(groupName),
    keyShares: (ch.shares ?? []).map((s) => groupName(s.group)),
    signatureSchemes: (ch.schemes ?? []).map(schemeName),
    cipherSuites: ch.cipherSuites.map(suiteName),
    pq: groups.some((id) => groupById(id)?.pq),
  };
}

/** The server's handshake state: set up front, filled in step by step. */
interface ServerState {
  readonly config: TlsServerConfig;
  readonly records: RecordLayer;
  readonly transcript: Transcript;
  readonly startMs: number;
  readonly suites: CipherSuite[];
  readonly groups: KeyExchangeGroup[];
  ch: ClientHelloView;
  suite: CipherSuite;
  group: KeyExchangeGroup;
  helloRetry: boolean;
  session?: ServerSession;
  /** On resumption: the authentication the ticket stands for, re-checked. */
  resumed?: SessionAuthentication;
  /** Why an offered ticket was declined. */
  resumptionDeclined?: string;
  certificate?: ChosenCertificate;
  alpn?: string;
  /** The client's authentication, when it sent a certificate, and who its leaf names. */
  client?: PeerAuthentication;
  clientIdentity?: PeerIdentity;
}

/**
 * Runs the server handshake on `records` and returns the negotiated state. Throws TlsAlert
 * (send it), PeerAlert or TransportClosed.
 */
export async function serverHandshake(
  records: RecordLayer,
  config: TlsServerConfig,
  progress: ServerProgress,
): Promise<HandshakeResult> {
  const startMs = Date.now();
  const transcript = new Transcript();
  const suites = resolveSuites(config.cipherSuites);
  const groups = resolveGroups(config.groups, config.allowClassical);

  // 1. ClientHello: version, suite, group.
  let ch = viewClientHello(await records.readHandshake());
  records.helloExchanged();
  progress.clientOffer = describeOffer(ch);
  if (!ch.versions?.includes(TLS13)) {
    throw new TlsAlert("protocol_version", "client does not offer TLS 1.3");
  }
  const suite = suites.find((s) => ch.cipherSuites.includes(s.id));
  if (!suite) throw new TlsAlert("handshake_failure", "no cipher suite in common");
  const group = chooseGroup(config, groups, ch);
  const hs: ServerState = {
    config,
    records,
    transcript,
    startMs,
    suites,
    groups,
    ch,
    suite,
    group,
    helloRetry: false,
  };

  // 2. No share for the group we want: HelloRetryRequest, then the second ClientHello.
  let share = shareFor(ch, group);
  if (!share) {
    ch = hs.ch = await helloRetry(hs);
    share = shareFor(ch, group)!;
  }

  // 3. Resumption (the binder covers the transcript before this hello), certificate and ALPN
  // choices, all before anything is encrypted.
  hs.session = await acceptPsk(hs);
  transcript.add(ch.message.raw);
  if (!hs.session) {
    if (!ch.schemes) throw new TlsAlert("missing_extension", "no signature_algorithms");
    const keys = typeof config.certificates === "function"
      ? config.certificates()
      : config.certificates;
    hs.certificate = selectCertificate(keys, ch.serverName, ch.schemes, ch.certSchemes);
  }
  hs.alpn = chooseAlpn(config, ch);

  // 4. ServerHello and the handshake keys.
  const { serverShare, sharedSecret } = await group.respond(share.keyExchange);
  const serverHello = encodeServerHello({
    random: getCryptoProvider().randomBytes(32),
    legacySessionId: ch.legacySessionId,
    cipherSuite: suite.id,
    extensions: [
      encodeU16(ExtensionType.supported_versions, TLS13),
      encodeServerKeyShare({ group: group.id, keyExchange: serverShare }),
      ...(hs.session ? [encodeU16(ExtensionType.pre_shared_key, 0)] : []),
    ],
  });
  transcript.add(serverHello);
  // Sent with the encrypted flight: one segment (and one system call) instead of two.
  await records.hold(ContentType.handshake, serverHello);
  if (!hs.helloRetry) await sendCompatChangeCipherSpec(hs);

  const schedule = KeySchedule.start(suite, hs.session?.psk);
  schedule.enterHandshake(sharedSecret);
  const hsSecrets = schedule.trafficSecrets("hs", transcript.hash(suite));
  await records.setWriteKeys(suite, hsSecrets.server);
  await records.setReadKeys(suite, hsSecrets.client);
  // Early data is never accepted: skip what a client sent optimistically (RFC 8446 §4.2.10).
  if (ch.earlyData) records.skipRejectedEarlyData();

  // 5. The encrypted flight: EncryptedExtensions … Finished, written at once.
  const ctx: HandshakeContext = { records, transcript, suite };
  const flight = [encryptedExtensions(hs)];
  const requestClientCert = !hs.session && config.clientAuth !== "none";
  if (requestClientCert) flight.push(certificateRequest(config));
  transcript.add(...flight);
  if (hs.certificate) flight.push(...await certificateMessages(ctx, "server", hs.certificate));
  flight.push(finishedMessage(ctx, hsSecrets.server));
  await records.write(ContentType.handshake, concat(...flight));

  schedule.enterMaster();
  const apSecrets = schedule.trafficSecrets("ap", transcript.hash(suite));
  await records.setWriteKeys(suite, apSecrets.server);

  // 6. The client's flight: [Certificate, CertificateVerify,] Finished.
  if (requestClientCert) await readClientCertificate(hs, ctx);
  checkFinished(ctx, await records.readHandshake(), hsSecrets.client, "client");
  await records.setReadKeys(suite, apSecrets.client);
  records.handshakeDone();

  // 7. A ticket for next time.
  if (config.tickets) {
    const rms = schedule.resumptionMasterSecret(transcript.hash(suite));
    await sendTicket(hs, rms);
  }

  return {
    suite,
    readSecret: apSecrets.client,
    writeSecret: apSecrets.server,
    info: {
      version: "TLSv1.3",
      role: "server",
      cipherSuite: suite.name,
      group: group.name,
      signatureScheme: hs.certificate ? schemeName(hs.certificate.scheme) : undefined,
      peerSignatureScheme: hs.client && schemeName(hs.client.scheme),
      resumed: hs.session !== undefined,
      helloRetry: hs.helloRetry,
      alpn: hs.alpn,
      serverName: ch.serverName,
      peerCertificates: hs.client?.chain ?? [],
      peerLeaf: hs.client?.peer.leaf,
      peerIdentity: hs.clientIdentity ?? hs.resumed?.client?.identity,
      resumptionDeclined: hs.resumptionDeclined,
      timings: { startMs, handshakeMs: Date.now() - startMs },
      clientOffer: progress.clientOffer,
    },
  };
}

/**
 * The server's preferred group among the client's supported_groups. A client offering only
 * classical groups, where classical is not allowed, is refused with insufficient_security.
 */
function chooseGroup(
  config: TlsServerConfig,
  groups: KeyExchangeGroup[],
  ch: ClientHelloView,
): KeyExchangeGroup {
  if (!ch.groups || !ch.shares) {
    throw new TlsAlert("missing_extension", "ClientHello lacks supported_groups or key_share");
  }
  const seen = new Set<number>();
  for (const share of ch.shares) {
    if (seen.has(share.group) || !ch.groups.includes(share.group)) {
      throw new TlsAlert(
        "illegal_parameter",
        `key share for ${groupName(share.group)} is duplicated or not in supported_groups`,
      );
    }
    seen.add(share.group);
  }
  const group = groups.find((g) => ch.groups!.includes(g.id));
  if (group) return group;
  const pqOffered = ch.groups.some((id) => groupById(id)?.pq);
  if (!pqOffered && !config.allowClassical) {
    throw new TlsAlert(
      "insufficient_security",
      `client offers only classical key exchange (${ch.groups.map(groupName).join(", ")})`,
    );
  }
  throw new TlsAlert("handshake_failure", "no key exchange group in common");
}

function shareFor(ch: ClientHelloView, group: KeyExchangeGroup): KeyShareEntry | undefined {
  return ch.shares?.find((s) => s.group === group.id);
}

/** Sends a HelloRetryRequest for `hs.group` with a cookie and returns the checked ClientHello2. */
async function helloRetry(hs: ServerState): Promise<ClientHelloView> {
  const { records, transcript, suite, group, ch } = hs;
  const cookie = getCryptoProvider().randomBytes(32);
  const hrr = encodeServerHello({
    random: HELLO_RETRY_REQUEST_RANDOM,
    legacySessionId: ch.legacySessionId,
    cipherSuite: suite.id,
    extensions: [
      encodeU16(ExtensionType.supported_versions, TLS13),
      encodeU16(ExtensionType.key_share, group.id),
      encodeCookie(cookie),
    ],
  });
  transcript.add(ch.message.raw);
  transcript.replaceWithMessageHash(suite);
  transcript.add(hrr);
  await records.hold(ContentType.handshake, hrr);
  hs.helloRetry = true;
  await sendCompatChangeCipherSpec(hs);
  await records.flush();
  // 0-RTT data the client sent after the first hello comes before the second (RFC 8446 §4.2.10).
  if (ch.earlyData) records.skipRejectedEarlyData();

  const ch2 = viewClientHello(await records.readHandshake());
  if (!ch2.cookie || !equalBytes(ch2.cookie, cookie)) {
    throw new TlsAlert("illegal_parameter", "second ClientHello lacks our cookie");
  }
  if (ch2.shares?.length !== 1 || ch2.shares[0].group !== group.id) {
    throw new TlsAlert("illegal_parameter", `second ClientHello must share exactly ${group.name}`);
  }
  if (ch2.earlyData) throw new TlsAlert("illegal_parameter", "early_data after HelloRetryRequest");
  checkSecondHello(ch, ch2);
  return ch2;
}

/**
 * Middlebox compatibility (RFC 8446 D.4): a client that sent a legacy_session_id gets one
 * change_cipher_spec right after our first handshake message (ServerHello or
 * HelloRetryRequest), held with it so both leave in one write.
 */
async function sendCompatChangeCipherSpec(hs: ServerState): Promise<void> {
  if (hs.ch.legacySessionId.length) {
    await hs.records.hold(ContentType.change_cipher_spec, CHANGE_CIPHER_SPEC);
  }
}

/** The body of a change_cipher_spec record. */
const CHANGE_CIPHER_SPEC = Uint8Array.of(1);

/**
 * Extensions a second ClientHello may change (RFC 8446 §4.1.2): the key share (checked by the
 * caller), the cookie (added), the PSKs (ages and binders recomputed, some dropped), padding.
 * early_data must go (the caller refuses it).
 */
const CHANGEABLE_AFTER_RETRY: readonly number[] = [
  ExtensionType.key_share,
  ExtensionType.cookie,
  ExtensionType.pre_shared_key,
  ExtensionType.padding,
  ExtensionType.early_data,
];

/**
 * The second ClientHello must be the first with only the changes a HelloRetryRequest allows:
 * the same version, random, session id, suites and extensions in the same order with the same
 * bodies (RFC 8446 §4.1.2); illegal_parameter otherwise.
 */
function checkSecondHello(ch1: ClientHelloView, ch2: ClientHelloView): void {
  const differs = (what: string) => {
    throw new TlsAlert("illegal_parameter", `second ClientHello changed ${what}`);
  };
  if (ch2.legacyVersion !== ch1.legacyVersion) differs("legacy_version");
  if (!equalBytes(ch2.random, ch1.random)) differs("random");
  if (!equalBytes(ch2.legacySessionId, ch1.legacySessionId)) differs("legacy_session_id");
  if (ch2.cipherSuites.join() !== ch1.cipherSuites.join()) differs("cipher_suites");
  const fixed = (extensions: Extension[]) =>
    extensions.filter((e) => !CHANGEABLE_AFTER_RETRY.includes(e.type));
  const [before, after] = [fixed(ch1.extensions), fixed(ch2.extensions)];
  if (before.map((e) => e.type).join() !== after.map((e) => e.type).join()) {
    differs("its extensions or their order");
  }
  const changed = after.find((e, i) => !equalBytes(e.data, before[i].data));
  if (changed) differs(`extension ${changed.type}`);
  // key_share may change its body, not its place among the fixed extensions.
  const keyShareAt = ({ extensions }: ClientHelloView) =>
    fixed(extensions.slice(0, extensions.findIndex((e) => e.type === ExtensionType.key_share)))
      .length;
  if (!ch1.shares || keyShareAt(ch1) !== keyShareAt(ch2)) differs("the place of key_share");
  if (ch2.psks) {
    const offered = ch1.psks?.identities.map((id) => id.identity) ?? [];
    if (!ch2.psks.identities.every((id) => offered.some((o) => equalBytes(o, id.identity)))) {
      differs("pre_shared_key identities");
    }
  }
}

/**
 * Checks the first offered PSK: a ticket we can open, for this suite's hash, fresh enough, with
 * a binder that verifies (decrypt_error otherwise), whose authentication still holds here
 * (resumption.ts). Only then is anything the ticket says about the client used. Any other
 * outcome declines the PSK: a full handshake, with the reason in `hs.resumptionDeclined`.
 */
async function acceptPsk(hs: ServerState): Promise<ServerSession | undefined> {
  const { ch, config, suite, transcript } = hs;
  if (!ch.psks) return undefined;
  if (!ch.pskModes) {
    throw new TlsAlert("missing_extension", "pre_shared_key without psk_key_exchange_modes");
  }
  if (!config.tickets || !ch.pskModes.includes(PSK_DHE_KE)) return undefined;
  const decline = (reason: string): undefined => {
    hs.resumptionDeclined = reason;
    return undefined;
  };
  const { identities, binders, bindersLength } = ch.psks;
  const opened = config.tickets.open(identities[0].identity);
  const session = opened && decodeServerSession(opened);
  if (!session) return decline("ticket not sealed by a current ticket key");
  if (suiteById(session.suite)?.hash !== suite.hash) {
    return decline("ticket for a cipher suite of another hash");
  }
  const nowMs = Date.now();
  if (!ticketAgeAcceptable(session, identities[0].obfuscatedTicketAge, nowMs)) {
    return decline("ticket expired or its age does not match");
  }

  // The binder covers the transcript so far plus this ClientHello without its binders list.
  const raw = ch.message.raw;
  const truncated = raw.subarray(0, raw.length - bindersLength);
  const expected = pskBinder(suite, session.psk, transcript, truncated);
  if (!equalBytes(binders[0], expected)) {
    throw new TlsAlert("decrypt_error", "PSK binder does not verify");
  }
  const verdict = await resumedAuthentication(config, session.authentication, nowMs);
  if ("declined" in verdict) return decline(verdict.declined);
  hs.resumed = verdict.accepted;
  return session;
}

function chooseAlpn(config: TlsServerConfig, ch: ClientHelloView): string | undefined {
  if (!config.alpn?.length || !ch.alpn) return undefined;
  const chosen = config.alpn.find((p) => ch.alpn!.includes(p));
  if (!chosen) {
    throw new TlsAlert("no_application_protocol", `client offers ALPN ${ch.alpn.join(", ")}`);
  }
  return chosen;
}

function encryptedExtensions(hs: ServerState): Uint8Array {
  const ext: Extension[] = [];
  if (hs.alpn) ext.push(encodeAlpn([hs.alpn]));
  if (hs.ch.serverName !== undefined) {
    ext.push({ type: ExtensionType.server_name, data: new Uint8Array(0) });
  }
  if (hs.ch.recordSizeLimit !== undefined) {
    hs.records.peerMaxFragment = Math.min(16384, hs.ch.recordSizeLimit - 1);
    const ours = hs.config.recordSizeLimit ?? 16385;
    // Everything the client protects comes after it reads this (RFC 8449 §4).
    hs.records.receiveLimit = ours;
    ext.push(encodeU16(ExtensionType.record_size_limit, ours));
  }
  return encodeEncryptedExtensions(ext);
}

/**
 * CertificateRequests made so far, by trust-anchor list and PQ policy: naming the anchors
 * (certificate_authorities) takes their subjects, which is the same every handshake until the
 * list is replaced (a reload gives a new array).
 */
const certificateRequests = new WeakMap<readonly Uint8Array[], Map<boolean, Uint8Array>>();

function certificateRequest(config: TlsServerConfig): Uint8Array {
  const pqOnly = config.requirePqAuth ?? false;
  let byPolicy = certificateRequests.get(config.trustAnchors);
  if (!byPolicy) certificateRequests.set(config.trustAnchors, byPolicy = new Map());
  let message = byPolicy.get(pqOnly);
  if (!message) {
    const authorities = config.trustAnchors.map((der) => parseCertificate(der).subjectDer);
    message = encodeCertificateRequest({
      context: new Uint8Array(0),
      extensions: [
        encodeU16List(ExtensionType.signature_algorithms, offeredSchemes(pqOnly)),
        encodeU16List(ExtensionType.signature_algorithms_cert, offeredCertSchemes(pqOnly)),
        ...(authorities.length ? [encodeCertificateAuthorities(authorities)] : []),
      ],
    });
    byPolicy.set(pqOnly, message);
  }
  return message;
}

/** Our CertificateRequest asks for no per-certificate extension (status_request, SCT). */
const NOTHING_SOLICITED: ReadonlySet<number> = new Set();

/**
 * Reads and checks the client's Certificate and CertificateVerify, then the access policy. A
 * client without a certificate is refused where one is required, and where an access policy
 * applies: no policy can admit a client it cannot name (`clientAuth: "request"` with a policy
 * would otherwise let anonymous clients past it).
 */
async function readClientCertificate(hs: ServerState, ctx: HandshakeContext): Promise<void> {
  const { config } = hs;
  const certificate = await readMessage(hs.records, HandshakeType.certificate);
  const client = await readPeerAuthentication(
    ctx,
    certificate,
    config,
    "server",
    offeredSchemes(config.requirePqAuth ?? false),
    NOTHING_SOLICITED,
  );
  if (!client) {
    if (config.clientAuth === "require") {
      throw new TlsAlert("certificate_required", "client sent no certificate");
    }
    if (config.accessPolicy) {
      throw new TlsAlert(
        "certificate_required",
        "client sent no certificate and an access policy applies",
      );
    }
    return;
  }
  const identity = await peerIdentity(client.peer.leaf, client.chain[0]);
  const verdict = config.accessPolicy?.(identity) ?? true;
  if (verdict !== true) {
    throw new TlsAlert(
      "access_denied",
      typeof verdict === "string" ? verdict : `${identity.subject} is not allowed`,
    );
  }
  hs.client = client;
  hs.clientIdentity = identity;
}

/**
 * A NewSessionTicket standing for this connection's authentication: the full handshake's, or,
 * on a resumed connection, the original one (its authentication time kept), announced for no
 * longer than the resumption maximum age leaves.
 */
async function sendTicket(hs: ServerState, resumptionMasterSecret: Uint8Array): Promise<void> {
  const { config } = hs;
  const tickets = config.tickets!;
  const nowMs = Date.now();
  const authentication = hs.resumed ??
    await fullHandshakeAuthentication(config, hs.client, hs.clientIdentity, nowMs);
  const lifetimeSeconds = ticketLifetimeSeconds(
    config,
    tickets.lifetimeSeconds,
    authentication,
    nowMs,
  );
  const sealed = encodeAuthentication(authentication);
  // A client whose chain's facts are too large to seal gets full handshakes, not a ticket.
  if (lifetimeSeconds === 0 || !sealed) return;
  const p = getCryptoProvider();
  const nonce = p.randomBytes(8);
  const ageAdd = new DataView(p.randomBytes(4).buffer).getUint32(0);
  const state = encodeServerSession({
    suite: hs.suite.id,
    psk: resumptionPsk(hs.suite, resumptionMasterSecret, nonce),
    createdMs: nowMs,
    ageAdd,
    lifetimeSeconds,
    alpn: hs.alpn,
    authentication: sealed,
  });
  const ticket = tickets.seal(state);
  await hs.records.writeByNextTurn(
    ContentType.handshake,
    encodeNewSessionTicket({ lifetimeSeconds, ageAdd, nonce, ticket, extensions: [] }),
  );
}
