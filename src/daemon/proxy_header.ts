/**
 * Reading the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that a load
 * balancer sends before the client's first byte, so that limits, logs, metrics and the header
 * qsign sends to its own backend name the real client rather than the balancer.
 *
 * The header is read byte-exactly (the version 1 line a byte at a time, the version 2 block by
 * its declared length), so nothing of the TLS stream behind it is consumed, and it is bounded in
 * size (version 1: 107 bytes; version 2: MAX_V2_BODY) and in time (the caller's deadline).
 */
import ipaddr from "ipaddr.js";
import { PROXY_V2_SIGNATURE } from "./proxy_protocol.ts";

/** The longest version 1 line, CRLF included (proxy-protocol.txt §2.1). */
const MAX_V1_LINE = 107;
/**
 * The longest version 2 address block and TLVs accepted. The format allows 65535 bytes; what a
 * balancer sends (addresses, ALPN, authority, unique id, SSL facts) fits in far less.
 */
export const MAX_V2_BODY = 4096;

/** A connection that sent no valid PROXY header where one was required. */
export class ProxyHeaderError extends Error {
  constructor(readonly problem: string) {
    super(`PROXY protocol header: ${problem}`);
    this.name = "ProxyHeaderError";
  }
}

/**
 * What the header says: `proxy` with the client's (source) and the balancer's listener
 * (destination) addresses, or `local` (the balancer's own connection, e.g. a health check, or an
 * address family that carries no address) for which the connection's own addresses stand.
 */
export type ProxyHeader =
  | { command: "proxy"; source: Deno.NetAddr; destination: Deno.NetAddr; version: 1 | 2 }
  | { command: "local"; version: 1 | 2 };

/**
 * Reads one PROXY header from `conn`. Throws `ProxyHeaderError` for a missing, malformed or
 * oversized header, or when the peer closes first. The caller bounds the time (it closes `conn`
 * at its deadline, which ends the pending read).
 */
export async function readProxyHeader(conn: Deno.Conn): Promise<ProxyHeader> {
  const first = await readExactly(conn, 1);
  if (first[0] === PROXY_V2_SIGNATURE[0]) return await readV2(conn, first);
  if (first[0] === 0x50 /* "P" */) return await readV1(conn, first);
  throw new ProxyHeaderError(`missing (the connection starts with byte 0x${hex(first[0])})`);
}

async function readV1(conn: Deno.Conn, first: Uint8Array): Promise<ProxyHeader> {
  const line = new Uint8Array(MAX_V1_LINE);
  line.set(first);
  let length = 1;
  while (!(length >= 2 && line[length - 2] === 0x0d && line[length - 1] === 0x0a)) {
    if (length === MAX_V1_LINE) throw new ProxyHeaderError("version 1 line longer than 107 bytes");
    line.set(await readExactly(conn, 1), length++);
  }
  // The line is US-ASCII; anything else makes it malformed below.
  const text = String.fromCharCode(...line.subarray(0, length - 2));
  const fields = text.split(" ");
  if (fields[0] !== "PROXY") throw new ProxyHeaderError(`not a PROXY line: ${printable(text)}`);
  if (fields[1] === "UNKNOWN") return { command: "local", version: 1 };
  if (fields.length !== 6 || (fields[1] !== "TCP4" && fields[1] !== "TCP6")) {
    throw new ProxyHeaderError(`malformed version 1 line: ${printable(text)}`);
  }
  const [, family, source, destination, sourcePort, destinationPort] = fields;
  const parse = family === "TCP4" ? canonicalIpv4 : canonicalIpv6;
  const src = parse(source), dst = parse(destination);
  const sport = port(sourcePort), dport = port(destinationPort);
  if (src === undefined || dst === undefined || sport === undefined || dport === undefined) {
    throw new ProxyHeaderError(`malformed version 1 line: ${printable(text)}`);
  }
  return {
    command: "proxy",
    version: 1,
    source: { transport: "tcp", hostname: src, port: sport },
    destination: { transport: "tcp", hostname: dst, port: dport },
  };
}

async function readV2(conn: Deno.Conn, first: Uint8Array): Promise<ProxyHeader> {
  const head = new Uint8Array(16);
  head.set(first);
  head.set(await readExactly(conn, 15), 1);
  if (!PROXY_V2_SIGNATURE.every((byte, i) => head[i] === byte)) {
    throw new ProxyHeaderError("bad version 2 signature");
  }
  const versionCommand = head[12], family = head[13];
  const length = (head[14] << 8) | head[15];
  if (versionCommand >> 4 !== 2) {
    throw new ProxyHeaderError(`unsupported version ${versionCommand >> 4}`);
  }
  if (length > MAX_V2_BODY) {
    throw new ProxyHeaderError(`version 2 body of ${length} bytes (at most ${MAX_V2_BODY})`);
  }
  const body = await readExactly(conn, length);
  const command = versionCommand & 0x0f;
  if (command === 0x0) return { command: "local", version: 2 };
  if (command !== 0x1) throw new ProxyHeaderError(`unknown version 2 command ${command}`);
  // Only TCP over IPv4 (0x11) or IPv6 (0x21) carries an address qsign can use; the rest (UNSPEC,
  // UDP, unix sockets) is treated as LOCAL, as the specification asks of receivers.
  const addressLength = family === 0x11 ? 12 : family === 0x21 ? 36 : 0;
  if (addressLength === 0) return { command: "local", version: 2 };
  if (length < addressLength) {
    throw new ProxyHeaderError(`version 2 body of ${length} bytes holds no address`);
  }
  checkTlvs(body.subarray(addressLength));
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const ipLength = addressLength === 12 ? 4 : 16;
  const ip = (offset: number) =>
    ipLength === 4
      ? [...body.subarray(offset, offset + 4)].join(".")
      : ipaddr.fromByteArray([...body.subarray(offset, offset + 16)]).toString();
  return {
    command: "proxy",
    version: 2,
    source: { transport: "tcp", hostname: ip(0), port: view.getUint16(2 * ipLength) },
    destination: {
      transport: "tcp",
      hostname: ip(ipLength),
      port: view.getUint16(2 * ipLength + 2),
    },
  };
}

/** TLVs must tile the rest of the body exactly (§2.2.7); their contents are not used. */
function checkTlvs(tlvs: Uint8Array): void {
  for (let offset = 0; offset < tlvs.length;) {
    if (offset + 3 > tlvs.length) throw new ProxyHeaderError("truncated TLV header");
    const length = (tlvs[offset + 1] << 8) | tlvs[offset + 2];
    offset += 3 + length;
    if (offset > tlvs.length) throw new ProxyHeaderError("TLV runs past the header");
  }
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let filled = 0; filled < n;) {
    let read: number | null;
    try {
      read = await conn.read(out.subarray(filled));
    } catch (e) {
      throw new ProxyHeaderError(`connection failed during the header (${(e as Error).message})`);
    }
    if (read === null) throw new ProxyHeaderError("connection closed during the header");
    filled += read;
  }
  return out;
}

/** An IPv4 address in the dotted form version 1 requires (no leading zeros), or undefined. */
function canonicalIpv4(text: string): string | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return undefined;
  }
  return text;
}

/** An IPv6 address in its RFC 5952 text form, or undefined (zone identifiers are refused). */
function canonicalIpv6(text: string): string | undefined {
  if (text.includes("%") || !ipaddr.IPv6.isValid(text)) return undefined;
  return ipaddr.IPv6.parse(text).toRFC5952String();
}

function port(text: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/** At most 60 characters of `text`, control characters escaped, for an error message. */
function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f-\xff]/g, (c) => `\\x${hex(c.charCodeAt(0))}`);
  return clean.length > 60 ? `${clean.slice(0, 60)}…` : clean;
}
