/**
 * Extensions (RFC 8446 §4.2): the generic list, and a decoder/encoder for each extension qsign
 * understands. Decoders take the extension body and reject anything malformed with decode_error;
 * semantic checks (which extension may appear in which message) live in the handshakes.
 */
import { TlsAlert } from "../alert.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { ExtensionType } from "./constants.ts";

export interface Extension {
  type: number;
  data: Uint8Array;
}

/** Reads an extension list; a repeated extension type is illegal_parameter (RFC 8446 §4.2). */
export function readExtensions(r: ByteReader): Extension[] {
  const list = r.sub(2, "extensions");
  const out: Extension[] = [];
  const seen = new Set<number>();
  while (list.remaining) {
    const type = list.u16();
    const data = list.vector(2);
    if (seen.has(type)) throw new TlsAlert("illegal_parameter", `duplicate extension ${type}`);
    seen.add(type);
    out.push({ type, data });
  }
  return out;
}

export function writeExtensions(w: ByteWriter, extensions: readonly Extension[]): void {
  w.vector(2, () => {
    for (const e of extensions) w.u16(e.type).opaque(2, e.data);
  });
}

/** The messages of RFC 8446 §4.2's table, by its abbreviations. */
export type ExtensionMessage = "CH" | "SH" | "HRR" | "EE" | "CT" | "CR" | "NST";

const E = ExtensionType;
/** One of each for the module: a decoder made per call costs more than the names it decodes. */
const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** Where each extension qsign recognizes may appear (RFC 8446 §4.2; record_size_limit: RFC 8449). */
const EXTENSION_MESSAGES: ReadonlyMap<number, readonly ExtensionMessage[]> = new Map([
  [E.server_name, ["CH", "EE"]],
  [E.max_fragment_length, ["CH", "EE"]],
  [E.status_request, ["CH", "CR", "CT"]],
  [E.supported_groups, ["CH", "EE"]],
  [E.signature_algorithms, ["CH", "CR"]],
  [E.use_srtp, ["CH", "EE"]],
  [E.heartbeat, ["CH", "EE"]],
  [E.application_layer_protocol_negotiation, ["CH", "EE"]],
  [E.signed_certificate_timestamp, ["CH", "CR", "CT"]],
  [E.client_certificate_type, ["CH", "EE"]],
  [E.server_certificate_type, ["CH", "EE"]],
  [E.padding, ["CH"]],
  [E.record_size_limit, ["CH", "EE"]],
  [E.pre_shared_key, ["CH", "SH"]],
  [E.early_data, ["CH", "EE", "NST"]],
  [E.supported_versions, ["CH", "SH", "HRR"]],
  [E.cookie, ["CH", "HRR"]],
  [E.psk_key_exchange_modes, ["CH"]],
  [E.certificate_authorities, ["CH", "CR"]],
  [E.oid_filters, ["CR"]],
  [E.post_handshake_auth, ["CH"]],
  [E.signature_algorithms_cert, ["CH", "CR"]],
  [E.key_share, ["CH", "SH", "HRR"]],
] as [number, ExtensionMessage[]][]);

/** Messages whose extensions answer the peer's (RFC 8446 §4.2): unsolicited ones are refused. */
const RESPONSES: readonly ExtensionMessage[] = ["SH", "HRR", "EE", "CT"];

/**
 * The extension rules of RFC 8446 §4.2 for `extensions` received in `message`: one qsign
 * recognizes in a message it is not specified for is illegal_parameter; in a response (SH, HRR,
 * EE, a Certificate entry), one that answers nothing we sent (`solicited`) is
 * unsupported_extension, except the cookie of a HelloRetryRequest. Unrecognized extensions in
 * requests (ClientHello, CertificateRequest, NewSessionTicket) are ignored.
 */
export function checkExtensionRules(
  message: ExtensionMessage,
  extensions: readonly Extension[],
  solicited?: ReadonlySet<number>,
): void {
  for (const { type } of extensions) {
    const allowed = EXTENSION_MESSAGES.get(type);
    if (allowed && !allowed.includes(message)) {
      throw new TlsAlert("illegal_parameter", `extension ${type} is not allowed in ${message}`);
    }
    if (!RESPONSES.includes(message)) continue;
    if (message === "HRR" && type === ExtensionType.cookie) continue;
    if (!solicited?.has(type)) {
      throw new TlsAlert("unsupported_extension", `unsolicited extension ${type} in ${message}`);
    }
  }
}

/** The body of an extension of `type`, if present. */
export function findExtension(list: readonly Extension[], type: number): Uint8Array | undefined {
  return list.find((e) => e.type === type)?.data;
}

/** Builds an extension from a body writer. */
export function extension(type: number, body: (w: ByteWriter) => void): Extension {
  const w = new ByteWriter();
  body(w);
  return { type, data: w.finish() };
}

function reader(data: Uint8Array, what: string): ByteReader {
  return new ByteReader(data, what);
}

// --- server_name (RFC 6066 §3) ---

/** The host_name in a ClientHello server_name extension. */
export function decodeServerName(data: Uint8Array): string | undefined {
  const r = reader(data, "server_name");
  const list = r.sub(2, "server_name", 1);
  r.end();
  let host: string | undefined;
  while (list.remaining) {
    const type = list.u8();
    const name = list.vector(2, 1);
    if (type !== 0) continue;
    if (host !== undefined) throw new TlsAlert("illegal_parameter", "two host names in SNI");
    // RFC 6066: ASCII; a trailing dot or non-printable byte is a malformed name.
    if (name.some((b) => b <= 0x20 || b >= 0x7f)) {
      throw new TlsAlert("decode_error", "server_name is not a printable ASCII host name");
    }
    host = decoder.decode(name).toLowerCase();
  }
  return host;
}

export function encodeServerName(host: string): Extension {
  return extension(
    ExtensionType.server_name,
    (w) => w.vector(2, () => w.u8(0).opaque(2, encoder.encode(host))),
  );
}

// --- supported_groups, signature_algorithms(_cert), supported_versions ---

export function decodeU16List(data: Uint8Array, what: string): number[] {
  const r = reader(data, what);
  const list = r.u16List(2);
  r.end();
  return list;
}

export function encodeU16List(type: number, values: readonly number[]): Extension {
  return extension(type, (w) => w.u16List(2, values));
}

/** ClientHello supported_versions: a 1-byte-prefixed list. */
export function decodeClientVersions(data: Uint8Array): number[] {
  const r = reader(data, "supported_versions");
  const list = r.u16List(1);
  r.end();
  return list;
}

export function encodeClientVersions(versions: readonly number[]): Extension {
  return extension(ExtensionType.supported_versions, (w) => w.u16List(1, versions));
}

/** ServerHello / HelloRetryRequest supported_versions, and other single-u16 bodies. */
export function decodeU16(data: Uint8Array, what: string): number {
  const r = reader(data, what);
  const v = r.u16();
  r.end();
  return v;
}

export function encodeU16(type: number, value: number): Extension {
  return extension(type, (w) => w.u16(value));
}

// --- key_share (RFC 8446 §4.2.8) ---

export interface KeyShareEntry {
  group: number;
  keyExchange: Uint8Array;
}

export function decodeClientKeyShares(data: Uint8Array): KeyShareEntry[] {
  const r = reader(data, "key_share");
  const list = r.sub(2, "key_share");
  r.end();
  const out: KeyShareEntry[] = [];
  while (list.remaining) out.push({ group: list.u16(), keyExchange: list.vector(2, 1) });
  return out;
}

export function encodeClientKeyShares(entries: readonly KeyShareEntry[]): Extension {
  return extension(ExtensionType.key_share, (w) =>
    w.vector(2, () => {
      for (const e of entries) w.u16(e.group).opaque(2, e.keyExchange);
    }));
}

export function decodeServerKeyShare(data: Uint8Array): KeyShareEntry {
  const r = reader(data, "key_share");
  const entry = { group: r.u16(), keyExchange: r.vector(2, 1) };
  r.end();
  return entry;
}

export function encodeServerKeyShare(entry: KeyShareEntry): Extension {
  return extension(ExtensionType.key_share, (w) => w.u16(entry.group).opaque(2, entry.keyExchange));
}

// --- ALPN (RFC 7301) ---

export function decodeAlpn(data: Uint8Array): string[] {
  const r = reader(data, "application_layer_protocol_negotiation");
  const list = r.sub(2, "application_layer_protocol_negotiation", 2);
  r.end();
  const out: string[] = [];
  while (list.remaining) out.push(decoder.decode(list.vector(1, 1)));
  return out;
}

export function encodeAlpn(protocols: readonly string[]): Extension {
  return extension(ExtensionType.application_layer_protocol_negotiation, (w) =>
    w.vector(2, () => {
      for (const p of protocols) w.opaque(1, encoder.encode(p));
    }));
}

// --- cookie, psk_key_exchange_modes, certificate_authorities ---

export function decodeCookie(data: Uint8Array): Uint8Array {
  const r = reader(data, "cookie");
  const cookie = r.vector(2, 1);
  r.end();
  return cookie;
}

export function encodeCookie(cookie: Uint8Array): Extension {
  return extension(ExtensionType.cookie, (w) => w.opaque(2, cookie));
}

export function decodePskModes(data: Uint8Array): number[] {
  const r = reader(data, "psk_key_exchange_modes");
  const modes = Array.from(r.vector(1, 1));
  r.end();
  return modes;
}

export function encodePskModes(modes: readonly number[]): Extension {
  return extension(
    ExtensionType.psk_key_exchange_modes,
    (w) => w.opaque(1, Uint8Array.from(modes)),
  );
}

/** certificate_authorities: DER-encoded distinguished names. */
export function decodeCertificateAuthorities(data: Uint8Array): Uint8Array[] {
  const r = reader(data, "certificate_authorities");
  const list = r.sub(2, "certificate_authorities", 3);
  r.end();
  const out: Uint8Array[] = [];
  while (list.remaining) out.push(list.vector(2, 1));
  return out;
}

export function encodeCertificateAuthorities(names: readonly Uint8Array[]): Extension {
  return extension(ExtensionType.certificate_authorities, (w) =>
    w.vector(2, () => {
      for (const n of names) w.opaque(2, n);
    }));
}

// --- pre_shared_key (RFC 8446 §4.2.11) ---

export interface PskIdentity {
  identity: Uint8Array;
  obfuscatedTicketAge: number;
}

export interface OfferedPsks {
  identities: PskIdentity[];
  binders: Uint8Array[];
  /** Byte length of the binders list including its 2-byte prefix: what the binder hash leaves out. */
  bindersLength: number;
}

export function decodeOfferedPsks(data: Uint8Array): OfferedPsks {
  const r = reader(data, "pre_shared_key");
  const ids = r.sub(2, "pre_shared_key", 7);
  const identities: PskIdentity[] = [];
  while (ids.remaining) {
    identities.push({ identity: ids.vector(2, 1), obfuscatedTicketAge: ids.u32() });
  }
  const bindersLength = r.remaining;
  const list = r.sub(2, "pre_shared_key", 33);
  r.end();
  const binders: Uint8Array[] = [];
  while (list.remaining) binders.push(list.vector(1, 32));
  if (binders.length !== identities.length) {
    throw new TlsAlert("illegal_parameter", "pre_shared_key binder count differs from identities");
  }
  return { identities, binders, bindersLength };
}

/** Encodes an offered PSK list; binders are filled in later (see `bindersLength`). */
export function encodeOfferedPsks(identities: readonly PskIdentity[], binders: Uint8Array[]) {
  return extension(ExtensionType.pre_shared_key, (w) => {
    w.vector(2, () => {
      for (const id of identities) w.opaque(2, id.identity).u32(id.obfuscatedTicketAge);
    });
    w.vector(2, () => {
      for (const b of binders) w.opaque(1, b);
    });
  });
}

/** The byte length of an encoded binders list for binders of these lengths. */
export function bindersListLength(binderLengths: readonly number[]): number {
  return 2 + binderLengths.reduce((sum, n) => sum + 1 + n, 0);
}
