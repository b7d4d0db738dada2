/**
 * The PROXY protocol version 2 header (HAProxy's proxy-protocol.txt, §2.2) that proxy mode sends
 * to the target before any client byte, so the backend can log who called: the client's and the
 * listener's addresses, and in TLVs the TLS facts and the verified client identity.
 */
import ipaddr from "ipaddr.js";
import { concat } from "../tls/codec/bytes.ts";

/** The twelve bytes that open every version 2 header. */
export const PROXY_V2_SIGNATURE = Uint8Array.from("\r\n\r\n\0\r\nQUIT\n", (c) => c.charCodeAt(0));
const VERSION_2_PROXY = 0x21;
const TCP_OVER_IPV4 = 0x11;
const TCP_OVER_IPV6 = 0x21;

/** TLV types of the specification (§2.2.1 and §2.2.5). */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  SSL: 0x20,
  /** First type of the range reserved for applications: qsign puts the client's subject DN here. */
  QSIGN_CLIENT_SUBJECT: 0xe0,
  /** The client certificate's SHA-256 fingerprint (hex). */
  QSIGN_CLIENT_FINGERPRINT: 0xe1,
} as const;

/** Sub-TLVs of PP2_TYPE_SSL. */
export const PP2_SUBTYPE_SSL = {
  VERSION: 0x21,
  CN: 0x22,
  CIPHER: 0x23,
  SIG_ALG: 0x24,
  KEY_ALG: 0x25,
} as const;

/** The `client` bit field of PP2_TYPE_SSL. */
const PP2_CLIENT_SSL = 0x01;
const PP2_CLIENT_CERT_CONN = 0x02;

/** What the header describes. */
export interface ProxyHeaderInfo {
  client: Deno.NetAddr;
  /** The qsign listener the client connected to. */
  local: Deno.NetAddr;
  tls: {
    version: string;
    cipher: string;
    /** Signature scheme the client signed with, when it sent a certificate. */
    clientSignatureScheme?: string;
    /** The server's key exchange group (PP2_SUBTYPE_SSL_KEY_ALG). */
    group?: string;
    serverName?: string;
    alpn?: string;
  };
  /** The verified client certificate, when there was one. */
  clientIdentity?: { commonName?: string; subject: string; fingerprint: string };
}

const encoder = new TextEncoder();

/** Encodes the header. IPv4-mapped IPv6 client addresses are sent as IPv4. */
export function encodeProxyV2Header(info: ProxyHeaderInfo): Uint8Array {
  const source = parseIp(info.client.hostname);
  let destination = parseIp(info.local.hostname);
  // Both addresses must be of one family; a dual-stack listener may report the other one.
  if (source.length !== destination.length) {
    destination = source.length === 4 ? new Uint8Array(4) : new Uint8Array(16);
  }
  const addresses = new Uint8Array(source.length * 2 + 4);
  addresses.set(source, 0);
  addresses.set(destination, source.length);
  const ports = new DataView(addresses.buffer, source.length * 2);
  ports.setUint16(0, info.client.port);
  ports.setUint16(2, info.local.port);

  const tlvs: Uint8Array[] = [];
  if (info.tls.alpn) tlvs.push(tlv(PP2_TYPE.ALPN, encoder.encode(info.tls.alpn)));
  if (info.tls.serverName) tlvs.push(tlv(PP2_TYPE.AUTHORITY, encoder.encode(info.tls.serverName)));
  tlvs.push(sslTlv(info));
  if (info.clientIdentity) {
    tlvs.push(tlv(PP2_TYPE.QSIGN_CLIENT_SUBJECT, encoder.encode(info.clientIdentity.subject)));
    tlvs.push(
      tlv(PP2_TYPE.QSIGN_CLIENT_FINGERPRINT, encoder.encode(info.clientIdentity.fingerprint)),
    );
  }
  const body = concat(addresses, ...tlvs);
  const header = new Uint8Array(16 + body.length);
  header.set(PROXY_V2_SIGNATURE, 0);
  header[12] = VERSION_2_PROXY;
  header[13] = source.length === 4 ? TCP_OVER_IPV4 : TCP_OVER_IPV6;
  new DataView(header.buffer).setUint16(14, body.length);
  header.set(body, 16);
  return header;
}

function sslTlv(info: ProxyHeaderInfo): Uint8Array {
  const subTlvs = [
    tlv(PP2_SUBTYPE_SSL.VERSION, encoder.encode(info.tls.version)),
    tlv(PP2_SUBTYPE_SSL.CIPHER, encoder.encode(info.tls.cipher)),
  ];
  if (info.clientIdentity?.commonName) {
    subTlvs.push(tlv(PP2_SUBTYPE_SSL.CN, encoder.encode(info.clientIdentity.commonName)));
  }
  if (info.tls.clientSignatureScheme) {
    subTlvs.push(tlv(PP2_SUBTYPE_SSL.SIG_ALG, encoder.encode(info.tls.clientSignatureScheme)));
  }
  if (info.tls.group) subTlvs.push(tlv(PP2_SUBTYPE_SSL.KEY_ALG, encoder.encode(info.tls.group)));
  const head = new Uint8Array(5);
  head[0] = PP2_CLIENT_SSL | (info.clientIdentity ? PP2_CLIENT_CERT_CONN : 0);
  // verify = 0: the client certificate (if any) verified; unverified clients never get here.
  return tlv(PP2_TYPE.SSL, concat(head, ...subTlvs));
}

function tlv(type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(3 + value.length);
  out[0] = type;
  new DataView(out.buffer).setUint16(1, value.length);
  out.set(value, 3);
  return out;
}

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address; IPv4-mapped IPv6 becomes IPv4. */
function parseIp(text: string): Uint8Array {
  return Uint8Array.from(ipaddr.process(text).toByteArray());
}
