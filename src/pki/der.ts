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

/** The DER of the OID 1.2.840.113549.1.1.`n` (PKCS #1, RFC 8017 Appendix C). */
const pkcs1Oid = (n: number) =>
  new Uint8Array([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, n]);
const RSASSA_PSS_OID = pkcs1Oid(10);
/** AlgorithmIdentifier of rsaEncryption, with its NULL parameters. */
const RSA_ENCRYPTION_ALGORITHM = encodeTlv(
  0x30,
  concatBytes(pkcs1Oid(1), new Uint8Array([0x05, 0x00])),
);
/** AlgorithmIdentifier of id-RSASSA-PSS without parameters: any hash (RFC 4055 §3.1). */
const RSASSA_PSS_ALGORITHM = encodeTlv(0x30, RSASSA_PSS_OID);

/**
 * Replaces the AlgorithmIdentifier (the first SEQUENCE inside) of a SubjectPublicKeyInfo or
 * PKCS#8 PrivateKeyInfo; the key itself is left as it is.
 */
function withKeyAlgorithm(keyInfo: Uint8Array, algorithm: Uint8Array): Uint8Array {
  const outer = readTlv(keyInfo);
  if (outer.tag !== 0x30) throw new DerError("key info is not a SEQUENCE");
  const parts = children(keyInfo, outer).map((t) => tlvBytes(keyInfo, t));
  const at = parts.findIndex((p) => p[0] === 0x30);
  if (at < 0) throw new DerError("key info without an AlgorithmIdentifier");
  parts[at] = algorithm;
  return encodeTlv(0x30, concatBytes(...parts));
}

/** True when a SubjectPublicKeyInfo or PrivateKeyInfo names id-RSASSA-PSS. */
export function isRsaPssKeyInfo(keyInfo: Uint8Array): boolean {
  try {
    const outer = readTlv(keyInfo);
    const algorithm = children(keyInfo, outer).find((t) => t.tag === 0x30);
    if (!algorithm) return false;
    const [oid] = children(keyInfo, algorithm);
    const bytes = oid && tlvBytes(keyInfo, oid);
    return !!bytes && bytes.length === RSASSA_PSS_OID.length &&
      bytes.every((b, i) => b === RSASSA_PSS_OID[i]);
  } catch {
    return false;
  }
}

/**
 * An rsaEncryption SubjectPublicKeyInfo or PrivateKeyInfo as an id-RSASSA-PSS one (no
 * parameters), the form RFC 8446 §4.2.3 requires of rsa_pss_pss_* keys. WebCrypto exports RSA-PSS
 * keys as rsaEncryption; the RSA key inside is the same.
 */
export function asRsaPssKeyInfo(keyInfo: Uint8Array): Uint8Array {
  return withKeyAlgorithm(keyInfo, RSASSA_PSS_ALGORITHM);
}

/**
 * The rsaEncryption form of an id-RSASSA-PSS key, which is the only one WebCrypto imports; other
 * keys are returned as they are. Any RSASSA-PSS parameters are dropped: the caller signs or
 * verifies with the hash its scheme names.
 */
export function asWebCryptoKeyInfo(keyInfo: Uint8Array): Uint8Array {
  return isRsaPssKeyInfo(keyInfo) ? withKeyAlgorithm(keyInfo, RSA_ENCRYPTION_ALGORITHM) : keyInfo;
}
