/**
 * qsign's one low-level DER module: a strict reader (single-byte tags, definite minimal lengths,
 * nothing past the container) over offsets into the caller's buffer, TLV writing, unsigned
 * INTEGERs and the ECDSA signature conversions. The providers' key containers, composite keys
 * and the PKI's hand-made structures (src/pki/der.ts) and the certificate reader of the handshake
 * (src/pki/certificate_view.ts) are all built on it; building certificates and CSRs is
 * @peculiar/x509's business.
 */

/** Raised for bytes that are not the strict DER expected. */
export class DerError extends Error {
  constructor(problem: string) {
    super(`malformed DER: ${problem}`);
    this.name = "DerError";
  }
}

/** DER tags used by the key and signature structures. */
export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
  /** `[0] IMPLICIT` primitive (the ML-DSA seed in PKCS#8). */
  context0: 0x80,
  /** `[1]` constructed (the public key inside an ECPrivateKey). */
  context1Constructed: 0xa1,
} as const;

/** One tag-length-value element, as offsets into the buffer it was read from. */
export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just past the value. */
  readonly end: number;
}

/**
 * Reads the element at `offset`, which must end at or before `limit` (its container's end).
 * Lengths must be definite and minimal (X.690 §10.1); at most four length bytes.
 */
export function readTlv(bytes: Uint8Array, offset = 0, limit = bytes.length): Tlv {
  if (offset + 2 > limit) throw new DerError("truncated header");
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tag");
  let length = bytes[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new DerError("unsupported length form");
    if (contentStart + count > limit) throw new DerError("truncated length");
    if (bytes[contentStart] === 0) throw new DerError("non-minimal length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[contentStart + i];
    if (length < 0x80) throw new DerError("non-minimal length");
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError("value runs past its container");
  return { tag, start: offset, contentStart, end };
}

/** The elements directly inside the constructed element `parent` of `bytes`. */
export function children(bytes: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let offset = parent.contentStart; offset < parent.end;) {
    const child = readTlv(bytes, offset, parent.end);
    out.push(child);
    offset = child.end;
  }
  return out;
}

/** The elements that fill `contents` exactly (the content of a constructed element). */
export function readChildren(contents: Uint8Array): Tlv[] {
  return children(contents, { tag: 0, start: 0, contentStart: 0, end: contents.length });
}

/** Reads `bytes` as exactly one element with tag `tag` and returns its content. */
export function readSingle(bytes: Uint8Array, tag: number): Uint8Array {
  const tlv = readTlv(bytes);
  if (tlv.tag !== tag) throw new DerError(`expected tag 0x${tag.toString(16)}`);
  if (tlv.end !== bytes.length) throw new DerError("trailing bytes");
  return tlvContent(bytes, tlv);
}

/** The bytes of an element, header included (a view). */
export function tlvBytes(bytes: Uint8Array, tlv: Tlv): Uint8Array {
  return bytes.subarray(tlv.start, tlv.end);
}

/** The content bytes of an element (a view). */
export function tlvContent(bytes: Uint8Array, tlv: Tlv): Uint8Array {
  return bytes.subarray(tlv.contentStart, tlv.end);
}

/** Concatenates byte strings. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Encodes one element from its tag and its content, given whole or in parts. */
export function encodeTlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  const length = contents.reduce((sum, part) => sum + part.length, 0);
  const header = length < 0x80
    ? [tag, length]
    : length < 0x100
    ? [tag, 0x81, length]
    : length < 0x10000
    ? [tag, 0x82, length >> 8, length & 0xff]
    : length < 0x1000000
    ? [tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff]
    : [tag, 0x84, length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let offset = header.length;
  for (const part of contents) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A BOOLEAN's content: DER allows only 0x00 and 0xFF (X.690 §11.1). */
export function decodeBoolean(content: Uint8Array): boolean {
  if (content.length !== 1 || (content[0] !== 0x00 && content[0] !== 0xff)) {
    throw new DerError("BOOLEAN is not 0x00 or 0xFF");
  }
  return content[0] === 0xff;
}

/** An OBJECT IDENTIFIER's content as dotted text; each arc in its shortest form (X.690 §8.19). */
export function decodeOid(content: Uint8Array): string {
  if (!content.length) throw new DerError("empty OBJECT IDENTIFIER");
  if (content[content.length - 1] & 0x80) throw new DerError("OBJECT IDENTIFIER arc cut short");
  let text = "";
  let value = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i];
    if (value === 0 && byte === 0x80) throw new DerError("OBJECT IDENTIFIER arc padded");
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw new DerError("OBJECT IDENTIFIER arc too large");
    if (byte & 0x80) continue;
    // The first subidentifier holds the first two arcs (X.690 §8.19.4).
    text += text
      ? "." + value
      : value < 80
      ? Math.floor(value / 40) + "." + (value % 40)
      : "2." + (value - 80);
    value = 0;
  }
  return text;
}

/** Checks that an INTEGER's content is in its shortest two's-complement form (X.690 §8.3.2). */
export function checkInteger(value: Uint8Array): void {
  if (value.length === 0) throw new DerError("empty INTEGER");
  if (
    value.length > 1 &&
    ((value[0] === 0 && !(value[1] & 0x80)) || (value[0] === 0xff && value[1] & 0x80))
  ) {
    throw new DerError("non-minimal INTEGER");
  }
}

/** The magnitude of a non-negative INTEGER's content, checked for minimal encoding. */
function unsignedIntegerBytes(value: Uint8Array): Uint8Array {
  checkInteger(value);
  if (value[0] & 0x80) throw new DerError("negative INTEGER");
  return value[0] === 0 ? value.subarray(1) : value;
}

/** A non-negative INTEGER from big-endian magnitude bytes (leading zeros dropped). */
export function encodeUnsignedInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return trimmed.length === 0 || trimmed[0] & 0x80
    ? encodeTlv(Tag.integer, Uint8Array.of(0), trimmed)
    : encodeTlv(Tag.integer, trimmed);
}

/**
 * Converts a DER `ECDSA-Sig-Value` to the fixed-width r || s form WebCrypto and noble use,
 * each integer left-padded to `scalarLength` bytes. Throws `DerError` for anything that is not
 * strict DER or whose integers do not fit.
 */
export function ecdsaDerToRaw(der: Uint8Array, scalarLength: number): Uint8Array {
  const value = readSingle(der, Tag.sequence);
  const integers = readChildren(value);
  if (integers.length !== 2 || integers.some((child) => child.tag !== Tag.integer)) {
    throw new DerError("ECDSA signature is not two INTEGERs");
  }
  const raw = new Uint8Array(2 * scalarLength);
  integers.forEach((child, index) => {
    const integer = unsignedIntegerBytes(tlvContent(value, child));
    if (integer.length > scalarLength) throw new DerError("ECDSA integer too large");
    raw.set(integer, (index + 1) * scalarLength - integer.length);
  });
  return raw;
}

/** Converts a fixed-width r || s ECDSA signature to DER `ECDSA-Sig-Value`. */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  return encodeTlv(
    Tag.sequence,
    encodeUnsignedInteger(raw.subarray(0, half)),
    encodeUnsignedInteger(raw.subarray(half)),
  );
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
