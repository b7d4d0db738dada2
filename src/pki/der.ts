/**
 * The few DER operations @peculiar/x509 does not expose: the to-be-signed part of a signed
 * object (certificate, CRL, CSR) and the RSA-PSS form of RSA key infos. The low-level reader and
 * writer live in src/crypto/der.ts and are re-exported here for the PKI modules.
 */
import { children, concatBytes, DerError, encodeTlv, readTlv, tlvBytes } from "../crypto/der.ts";

export {
  bufferSource,
  children,
  concatBytes,
  DerError,
  encodeTlv,
  encodeUnsignedInteger,
  readTlv,
  type Tlv,
  tlvBytes,
  tlvContent,
} from "../crypto/der.ts";

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
