/**
 * The little DER the providers need for key containers and ECDSA signatures: strict reading
 * (definite minimal lengths, no trailing bytes) and writing of single TLVs. Certificates and
 * CSRs are @peculiar/x509's business, not this file's.
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
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  sequence: 0x30,
  /** `[0] IMPLICIT` primitive (the ML-DSA seed in PKCS#8). */
  context0: 0x80,
  /** `[1]` constructed (the public key inside an ECPrivateKey). */
  context1Constructed: 0xa1,
} as const;

/** One tag-length-value element; `value` is a view into the input. */
export interface Tlv {
  readonly tag: number;
  readonly value: Uint8Array;
  /** Offset just past the element. */
  readonly end: number;
}

/** Reads one element at `offset`, insisting on minimal definite-length encoding. */
export function readTlv(bytes: Uint8Array, offset = 0): Tlv {
  if (offset + 2 > bytes.length) throw new DerError("truncated header");
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tag");
  let length = bytes[offset + 1];
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3) throw new DerError("unsupported length form");
    if (start + count > bytes.length) throw new DerError("truncated length");
    if (bytes[start] === 0) throw new DerError("non-minimal length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i];
    if (length < 0x80) throw new DerError("non-minimal length");
    start += count;
  }
  const end = start + length;
  if (end > bytes.length) throw new DerError("truncated value");
  return { tag, value: bytes.subarray(start, end), end };
}

/** Reads `bytes` as exactly one element with tag `tag` and returns its value. */
export function readSingle(bytes: Uint8Array, tag: number): Uint8Array {
  const tlv = readTlv(bytes);
  if (tlv.tag !== tag) throw new DerError(`expected tag 0x${tag.toString(16)}`);
  if (tlv.end !== bytes.length) throw new DerError("trailing bytes");
  return tlv.value;
}

/** Splits the contents of a constructed element into its children. */
export function readChildren(contents: Uint8Array): Tlv[] {
  const children: Tlv[] = [];
  for (let offset = 0; offset < contents.length;) {
    const child = readTlv(contents, offset);
    children.push(child);
    offset = child.end;
  }
  return children;
}

/** Encodes one element from its tag and concatenated contents. */
export function encodeTlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  const length = contents.reduce((sum, part) => sum + part.length, 0);
  const header = length < 0x80
    ? [tag, length]
    : length < 0x100
    ? [tag, 0x81, length]
    : length < 0x10000
    ? [tag, 0x82, length >> 8, length & 0xff]
    : [tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let offset = header.length;
  for (const part of contents) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The value bytes of a non-negative INTEGER, checked for minimal encoding. */
function unsignedIntegerBytes(value: Uint8Array): Uint8Array {
  if (value.length === 0) throw new DerError("empty INTEGER");
  if (value[0] & 0x80) throw new DerError("negative INTEGER");
  if (value.length > 1 && value[0] === 0 && !(value[1] & 0x80)) {
    throw new DerError("non-minimal INTEGER");
  }
  return value[0] === 0 ? value.subarray(1) : value;
}

/** Encodes a non-negative big-endian integer as a DER INTEGER. */
function encodeUnsignedInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return trimmed[0] & 0x80
    ? encodeTlv(Tag.integer, Uint8Array.of(0), trimmed)
    : encodeTlv(Tag.integer, trimmed);
}

/**
 * Converts a DER `ECDSA-Sig-Value` to the fixed-width r || s form WebCrypto and noble use,
 * each integer left-padded to `scalarLength` bytes. Throws `DerError` for anything that is not
 * strict DER or whose integers do not fit.
 */
export function ecdsaDerToRaw(der: Uint8Array, scalarLength: number): Uint8Array {
  const children = readChildren(readSingle(der, Tag.sequence));
  if (children.length !== 2 || children.some((child) => child.tag !== Tag.integer)) {
    throw new DerError("ECDSA signature is not two INTEGERs");
  }
  const raw = new Uint8Array(2 * scalarLength);
  children.forEach((child, index) => {
    const integer = unsignedIntegerBytes(child.value);
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
