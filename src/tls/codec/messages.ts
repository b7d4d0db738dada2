/**
 * Handshake messages (RFC 8446 §4): encode to and decode from the body of a Handshake structure.
 * `frameHandshake` adds the 4-byte header; the raw framed bytes are what the transcript hashes.
 */
import { TlsAlert } from "../alert.ts";
import { ByteReader, ByteWriter, equalBytes } from "./bytes.ts";
import { HandshakeType, HELLO_RETRY_REQUEST_RANDOM, TLS12 } from "./constants.ts";
import { type Extension, readExtensions, writeExtensions } from "./extensions.ts";

/** A framed handshake message: its type, body, and the full bytes for the transcript. */
export interface HandshakeMessage {
  type: number;
  body: Uint8Array;
  raw: Uint8Array;
}

/** Adds the handshake header (type, u24 length) to a body. */
export function frameHandshake(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  out[0] = type;
  out[1] = body.length >>> 16;
  out[2] = body.length >>> 8;
  out[3] = body.length;
  out.set(body, 4);
  return out;
}

function build(type: number, body: (w: ByteWriter) => void): Uint8Array {
  const w = new ByteWriter(512);
  w.u8(type).vector(3, body);
  return w.finish();
}

// --- ClientHello ---

export interface ClientHello {
  random: Uint8Array;
  legacySessionId: Uint8Array;
  cipherSuites: number[];
  extensions: Extension[];
}

export function encodeClientHello(ch: ClientHello): Uint8Array {
  return build(HandshakeType.client_hello, (w) => {
    w.u16(TLS12).bytes(ch.random).opaque(1, ch.legacySessionId);
    w.u16List(2, ch.cipherSuites);
    w.opaque(1, new Uint8Array([0]));
    writeExtensions(w, ch.extensions);
  });
}

export function decodeClientHello(body: Uint8Array): ClientHello & { legacyVersion: number } {
  const r = new ByteReader(body, "ClientHello");
  const legacyVersion = r.u16();
  const random = r.bytesN(32);
  const legacySessionId = r.vector(1, 0, 32);
  const cipherSuites = r.u16List(2);
  const compression = r.vector(1, 1);
  if (compression.length !== 1 || compression[0] !== 0) {
    throw new TlsAlert("illegal_parameter", "ClientHello offers compression");
  }
  // A ClientHello without extensions is TLS 1.2 or older.
  const extensions = r.remaining ? readExtensions(r) : [];
  r.end();
  return { legacyVersion, random, legacySessionId, cipherSuites, extensions };
}

// --- ServerHello and HelloRetryRequest ---

export interface ServerHello {
  random: Uint8Array;
  legacySessionId: Uint8Array;
  cipherSuite: number;
  extensions: Extension[];
}

export function encodeServerHello(sh: ServerHello): Uint8Array {
  return build(HandshakeType.server_hello, (w) => {
    w.u16(TLS12).bytes(sh.random).opaque(1, sh.legacySessionId).u16(sh.cipherSuite).u8(0);
    writeExtensions(w, sh.extensions);
  });
}

export function decodeServerHello(
  body: Uint8Array,
): ServerHello & { legacyVersion: number; isRetryRequest: boolean } {
  const r = new ByteReader(body, "ServerHello");
  const legacyVersion = r.u16();
  const random = r.bytesN(32);
  const legacySessionId = r.vector(1, 0, 32);
  const cipherSuite = r.u16();
  if (r.u8() !== 0) throw new TlsAlert("illegal_parameter", "ServerHello selects compression");
  const extensions = r.remaining ? readExtensions(r) : [];
  r.end();
  const isRetryRequest = equalBytes(random, HELLO_RETRY_REQUEST_RANDOM);
  return { legacyVersion, random, legacySessionId, cipherSuite, extensions, isRetryRequest };
}

// --- EncryptedExtensions ---

export function encodeEncryptedExtensions(extensions: readonly Extension[]): Uint8Array {
  return build(HandshakeType.encrypted_extensions, (w) => writeExtensions(w, extensions));
}

export function decodeEncryptedExtensions(body: Uint8Array): Extension[] {
  const r = new ByteReader(body, "EncryptedExtensions");
  const ext = readExtensions(r);
  r.end();
  return ext;
}

// --- CertificateRequest ---

export interface CertificateRequest {
  context: Uint8Array;
  extensions: Extension[];
}

export function encodeCertificateRequest(cr: CertificateRequest): Uint8Array {
  return build(HandshakeType.certificate_request, (w) => {
    w.opaque(1, cr.context);
    writeExtensions(w, cr.extensions);
  });
}

export function decodeCertificateRequest(body: Uint8Array): CertificateRequest {
  const r = new ByteReader(body, "CertificateRequest");
  const cr = { context: r.vector(1), extensions: readExtensions(r) };
  r.end();
  return cr;
}

// --- Certificate ---

export interface CertificateMessage {
  context: Uint8Array;
  /** DER certificates, leaf first. */
  chain: Uint8Array[];
  /** Each entry's extensions, in chain order (decoded only; qsign sends none). */
  entryExtensions?: Extension[][];
}

export function encodeCertificate(msg: CertificateMessage): Uint8Array {
  return build(HandshakeType.certificate, (w) => {
    w.opaque(1, msg.context);
    w.vector(3, () => {
      for (const cert of msg.chain) w.opaque(3, cert).u16(0);
    });
  });
}

export function decodeCertificate(body: Uint8Array): CertificateMessage {
  const r = new ByteReader(body, "Certificate");
  const context = r.vector(1);
  const list = r.sub(3, "Certificate");
  r.end();
  const chain: Uint8Array[] = [];
  const entryExtensions: Extension[][] = [];
  while (list.remaining) {
    chain.push(list.vector(3, 1));
    entryExtensions.push(readExtensions(list));
  }
  return { context, chain, entryExtensions };
}

// --- CertificateVerify ---

export interface CertificateVerify {
  scheme: number;
  signature: Uint8Array;
}

export function encodeCertificateVerify(cv: CertificateVerify): Uint8Array {
  return build(HandshakeType.certificate_verify, (w) => w.u16(cv.scheme).opaque(2, cv.signature));
}

export function decodeCertificateVerify(body: Uint8Array): CertificateVerify {
  const r = new ByteReader(body, "CertificateVerify");
  const cv = { scheme: r.u16(), signature: r.vector(2, 1) };
  r.end();
  return cv;
}

// --- Finished ---

export function encodeFinished(verifyData: Uint8Array): Uint8Array {
  return frameHandshake(HandshakeType.finished, verifyData);
}

// --- NewSessionTicket (RFC 8446 §4.6.1) ---

export interface NewSessionTicket {
  lifetimeSeconds: number;
  ageAdd: number;
  nonce: Uint8Array;
  ticket: Uint8Array;
  extensions: Extension[];
}

export function encodeNewSessionTicket(t: NewSessionTicket): Uint8Array {
  return build(HandshakeType.new_session_ticket, (w) => {
    w.u32(t.lifetimeSeconds).u32(t.ageAdd).opaque(1, t.nonce).opaque(2, t.ticket);
    writeExtensions(w, t.extensions);
  });
}

export function decodeNewSessionTicket(body: Uint8Array): NewSessionTicket {
  const r = new ByteReader(body, "NewSessionTicket");
  const t = {
    lifetimeSeconds: r.u32(),
    ageAdd: r.u32(),
    nonce: r.vector(1),
    ticket: r.vector(2, 1),
    extensions: readExtensions(r),
  };
  r.end();
  return t;
}

// --- KeyUpdate (RFC 8446 §4.6.3) ---

export function encodeKeyUpdate(updateRequested: boolean): Uint8Array {
  return frameHandshake(HandshakeType.key_update, new Uint8Array([updateRequested ? 1 : 0]));
}

export function decodeKeyUpdate(body: Uint8Array): boolean {
  const r = new ByteReader(body, "KeyUpdate");
  const v = r.u8();
  r.end();
  if (v > 1) throw new TlsAlert("illegal_parameter", `KeyUpdate request_update ${v}`);
  return v === 1;
}

/** The synthetic message_hash message that replaces ClientHello1 after a HelloRetryRequest. */
export function messageHash(hashOfClientHello1: Uint8Array): Uint8Array {
  return frameHandshake(HandshakeType.message_hash, hashOfClientHello1);
}
