/**
 * The handshake steps both sides run, each once: reading a message of an expected type, sending
 * our Certificate and CertificateVerify, reading and checking the peer's, and Finished both
 * ways (RFC 8446 §4.4). client.ts and server.ts are sequences of these.
 */
import { TlsAlert } from "./alert.ts";
import {
  certificateVerifyInput,
  checkCertificateVerify,
  checkPqAuth,
  type ChosenCertificate,
} from "./auth.ts";
import type { CipherSuite } from "./cipher_suites.ts";
import { equalBytes } from "./codec/bytes.ts";
import { HandshakeType } from "./codec/constants.ts";
import { checkExtensionRules } from "./codec/extensions.ts";
import {
  decodeCertificate,
  decodeCertificateVerify,
  encodeCertificate,
  encodeCertificateVerify,
  encodeFinished,
  type HandshakeMessage,
} from "./codec/messages.ts";
import type { TlsClientConfig, TlsServerConfig, VerifiedPeer } from "./config.ts";
import { finishedMac, KeySchedule } from "./key_schedule.ts";
import { verifierFor } from "./peer.ts";
import type { RecordLayer } from "./record.ts";
import type { SignatureScheme } from "./sigschemes.ts";
import type { Transcript } from "./transcript.ts";

/** What every step works on: the records, the transcript so far, the negotiated suite. */
export interface HandshakeContext {
  readonly records: RecordLayer;
  readonly transcript: Transcript;
  readonly suite: CipherSuite;
}

type Role = "client" | "server";

/** The RFC name of a handshake message type (`certificate_verify`), or its number. */
function messageName(type: number): string {
  return Object.entries(HandshakeType).find(([, code]) => code === type)?.[0] ?? `type ${type}`;
}

/** `message` if it is of `type`; unexpected_message otherwise. */
export function ofType(message: HandshakeMessage, type: number): HandshakeMessage {
  if (message.type !== type) {
    throw new TlsAlert(
      "unexpected_message",
      `expected ${messageName(type)}, got ${messageName(message.type)}`,
    );
  }
  return message;
}

/** Reads the next handshake message, which must be of `type`. */
export async function readMessage(records: RecordLayer, type: number): Promise<HandshakeMessage> {
  return ofType(await records.readHandshake(), type);
}

/**
 * Our Certificate and, when we have a key, CertificateVerify over the transcript so far
 * (a client without a suitable key answers a CertificateRequest with an empty Certificate).
 * Both are added to the transcript; the caller sends them with the rest of its flight.
 */
export async function certificateMessages(
  ctx: HandshakeContext,
  role: Role,
  certificate: ChosenCertificate | undefined,
): Promise<Uint8Array[]> {
  const messages = [
    encodeCertificate({ context: new Uint8Array(0), chain: certificate?.key.chain ?? [] }),
  ];
  ctx.transcript.add(messages[0]);
  if (certificate) {
    const { key, scheme } = certificate;
    const signature = await key.signer.sign(
      scheme,
      certificateVerifyInput(role, ctx.transcript.hash(ctx.suite)),
    );
    messages.push(encodeCertificateVerify({ scheme, signature }));
    ctx.transcript.add(messages[1]);
  }
  return messages;
}

/** The peer's authentication as checked: its chain, and the scheme of its CertificateVerify. */
export interface PeerAuthentication {
  peer: VerifiedPeer;
  /** The certificates as sent (DER, leaf first), each held on its own (see `heldChain`). */
  chain: Uint8Array[];
  scheme: SignatureScheme;
}

/**
 * The peer's Certificate (already read) and CertificateVerify: the chain through the config's
 * verifier (its alert on failure), the post-quantum policy, and the signature over the
 * transcript, in one of the `offered` schemes (the signature_algorithms we sent). Entry
 * extensions must answer ones we sent (`solicited`, RFC 8446 §4.4.2). Undefined for an empty
 * Certificate: whether that is allowed is the caller's call.
 */
export async function readPeerAuthentication(
  ctx: HandshakeContext,
  certificateMessage: HandshakeMessage,
  config: TlsClientConfig | TlsServerConfig,
  ourRole: Role,
  offered: readonly SignatureScheme[],
  solicited: ReadonlySet<number>,
  serverName?: string,
): Promise<PeerAuthentication | undefined> {
  const { records, transcript, suite } = ctx;
  const certificate = decodeCertificate(ofType(certificateMessage, HandshakeType.certificate).body);
  if (certificate.context.length) {
    throw new TlsAlert("illegal_parameter", "certificate_request_context not empty");
  }
  for (const extensions of certificate.entryExtensions ?? []) {
    checkExtensionRules("CT", extensions, solicited);
  }
  transcript.add(certificateMessage.raw);
  if (!certificate.chain.length) return undefined;
  const requirePq = config.requirePqAuth ?? false;
  const peer = await verifierFor(config).verify(certificate.chain, { role: ourRole, serverName });
  if (requirePq) checkPqAuth(peer, undefined);

  const verifyMessage = await readMessage(records, HandshakeType.certificate_verify);
  const { scheme, signature } = decodeCertificateVerify(verifyMessage.body);
  await checkCertificateVerify(
    peer,
    scheme,
    signature,
    ourRole === "client" ? "server" : "client",
    transcript.hash(suite),
    offered,
  );
  if (requirePq) checkPqAuth(peer, scheme);
  transcript.add(verifyMessage.raw);
  return { peer, chain: heldChain(certificate.chain, peer), scheme };
}

/**
 * The certificates as sent, without the Certificate message they are views into (which a
 * connection would otherwise keep whole for as long as it lives): each is the verified path's
 * own copy where it is on the path (shared by every connection its cached verdict serves), else
 * a copy of its own.
 */
function heldChain(sent: readonly Uint8Array[], peer: VerifiedPeer): Uint8Array[] {
  return sent.map((der) => peer.chain.find((c) => equalBytes(c.der, der))?.der ?? der.slice());
}

/**
 * The binder of a PSK (RFC 8446 §4.2.11.2): a Finished MAC under the PSK's binder key over the
 * transcript so far plus the ClientHello up to (not including) its binders list.
 */
export function pskBinder(
  suite: CipherSuite,
  psk: Uint8Array,
  transcript: Transcript,
  truncatedHello: Uint8Array,
): Uint8Array {
  const binderKey = KeySchedule.start(suite, psk).binderKey();
  return finishedMac(suite, binderKey, transcript.hash(suite, truncatedHello));
}

/** Our Finished under `baseKey` (our handshake traffic secret), added to the transcript. */
export function finishedMessage(ctx: HandshakeContext, baseKey: Uint8Array): Uint8Array {
  const message = encodeFinished(finishedMac(ctx.suite, baseKey, ctx.transcript.hash(ctx.suite)));
  ctx.transcript.add(message);
  return message;
}

/**
 * Checks the peer's Finished: exactly Hash.length bytes (decode_error otherwise, RFC 8446
 * §4.4.4), then the MAC (decrypt_error); adds it.
 */
export function checkFinished(
  ctx: HandshakeContext,
  message: HandshakeMessage,
  peerBaseKey: Uint8Array,
  peerRole: Role,
): void {
  const verifyData = ofType(message, HandshakeType.finished).body;
  if (verifyData.length !== ctx.suite.hashLength) {
    throw new TlsAlert(
      "decode_error",
      `${peerRole} Finished of ${verifyData.length} bytes, not ${ctx.suite.hashLength}`,
    );
  }
  const expected = finishedMac(ctx.suite, peerBaseKey, ctx.transcript.hash(ctx.suite));
  if (!equalBytes(verifyData, expected)) {
    throw new TlsAlert("decrypt_error", `${peerRole} Finished does not verify`);
  }
  ctx.transcript.add(message.raw);
}
