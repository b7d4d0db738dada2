/**
 * The few DER operations @peculiar/x509 does not expose: the to-be-signed part of a signed
 * object (certificate, CRL, CSR), the NameConstraints and CRLNumber extensions, and the fixed
 * layouts of composite keys. Everything else about X.509 goes through @peculiar/x509.
 */

/** One DER tag-length-value inside a buffer. */
export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the value. */
  end: number;
}

/** Raised for bytes that are not the DER this module expects. */
export class DerError extends Error {
  constructor(what: string) {
    super(`malformed DER: ${what}`);
    this.name = "DerError";
  }
}

/** Reads the TLV at `offset` (single-byte tags, definite lengths only, as DER requires). */
export function readTlv(bytes: Uint8Array, offset = 0, limit = bytes.length): Tlv {
  if (offset + 2 > limit) throw new DerError("truncated header");
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tag");
  let length = bytes[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new DerError("unsupported length");
    if (contentStart + count > limit) throw new DerError("truncated length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[contentStart + i];
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError("value runs past its container");
  return { tag, start: offset, contentStart, end };
}

/** The TLVs directly inside a constructed TLV. */
export function children(bytes: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let offset = parent.contentStart; offset < parent.end;) {
    const child = readTlv(bytes, offset, parent.end);
    out.push(child);
    offset = child.end;
  }
  return out;
}

/** The bytes of a TLV, header included. */
export function tlvBytes(bytes: Uint8Array, tlv: Tlv): Uint8Array {
  return bytes.subarray(tlv.start, tlv.end);
}

/** The content bytes of a TLV. */
export function tlvContent(bytes: Uint8Array, tlv: Tlv): Uint8Array {
  return bytes.subarray(tlv.contentStart, tlv.end);
}

/**
 * The signed part of a certificate, CRL or CSR: all three are
 * `SEQUENCE { toBeSigned, signatureAlgorithm, signatureValue }`.
 */
export function toBeSigned(signedObject: Uint8Array): Uint8Array {
  const outer = readTlv(signedObject);
  if (outer.tag !== 0x30 || outer.end !== signedObject.length) throw new DerError("not a SEQUENCE");
  const [tbs] = children(signedObject, outer);
  if (!tbs || tbs.tag !== 0x30) throw new DerError("no to-be-signed SEQUENCE");
  return tlvBytes(signedObject, tbs);
}

/** Encodes one TLV. */
export function encodeTlv(tag: number, content: Uint8Array): Uint8Array {
  const length = content.length;
  let header: number[];
  if (length < 0x80) header = [tag, length];
  else if (length < 0x100) header = [tag, 0x81, length];
  else if (length < 0x10000) header = [tag, 0x82, length >> 8, length & 0xff];
  else header = [tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  out.set(content, header.length);
  return out;
}

/** Concatenates byte strings. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** A non-negative INTEGER from big-endian magnitude bytes. */
export function encodeUnsignedInteger(magnitude: Uint8Array): Uint8Array {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = magnitude.subarray(i);
  const content = trimmed.length === 0 || trimmed[0] & 0x80
    ? concatBytes(new Uint8Array([0]), trimmed)
    : trimmed;
  return encodeTlv(0x02, content);
}

/**
 * `bytes` as WebCrypto and @peculiar/x509 type their inputs (views of an ArrayBuffer, not a
 * SharedArrayBuffer); copies only in the shared case.
 */
export function bufferSource(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer
    ? bytes as Uint8Array<ArrayBuffer>
    : new Uint8Array(bytes);
}
