/**
 * TLS signature schemes and the `Signer` seam: the engine never touches private key bytes, it
 * asks a Signer (file key, PKCS#11 key, composite of two) to sign. Verification of a peer's
 * CertificateVerify goes through the crypto provider (and `src/crypto/composite.ts` for the
 * composite ML-DSA-65 + ECDSA-P384 scheme).
 */
import "reflect-metadata";
import type { X509Certificate } from "@peculiar/x509";
import { getCryptoProvider } from "../crypto/index.ts";
import { InvalidPublicValueError, type SignatureAlgorithmName } from "../crypto/provider.ts";
import { compositeVerify } from "../crypto/composite.ts";
import { asWebCryptoKeyInfo } from "../pki/der.ts";
import { CertificateView, readSubjectPublicKeyInfo } from "../pki/certificate_view.ts";
import { decodeOid, readTlv, tlvContent } from "../crypto/der.ts";
import { isGrease } from "./codec/constants.ts";

/** A TLS SignatureScheme code point (RFC 8446 §4.2.3 and the ML-DSA / composite drafts). */
export type SignatureScheme = number;

/** Something that can produce TLS signatures with one private key. */
export interface Signer {
  /** The schemes this key can produce, most preferred first. */
  readonly schemes: readonly SignatureScheme[];
  /** Where the key lives, for logs and errors; never key material (e.g. `file:/etc/qsign/server.key`). */
  readonly description: string;
  /**
   * Signs `message` (the full to-be-signed content, e.g. the CertificateVerify input) with
   * `scheme`, hashing as the scheme requires. The result is in the scheme's wire form.
   */
  sign(scheme: SignatureScheme, message: Uint8Array): Promise<Uint8Array>;
}

/** What kind of public key a scheme needs, as read from a certificate's SubjectPublicKeyInfo. */
export type KeyKind =
  | "ML-DSA-44"
  | "ML-DSA-65"
  | "ML-DSA-87"
  | "ECDSA-P256"
  | "ECDSA-P384"
  | "RSA"
  | "RSA-PSS"
  | "Ed25519"
  | "MLDSA65-ECDSA-P384";

export interface SchemeInfo {
  readonly code: SignatureScheme;
  readonly name: string;
  /** Post-quantum (ML-DSA, alone or in a composite). */
  readonly pq: boolean;
  readonly key: KeyKind;
  /** The provider algorithm; absent for the composite, which has its own verifier. */
  readonly algorithm?: SignatureAlgorithmName;
  /** Allowed in CertificateVerify (RSA PKCS#1 v1.5 is for certificate signatures only). */
  readonly handshake: boolean;
}

/** The composite ML-DSA-65 + ECDSA-P384 scheme (draft-reddy-tls-composite-mldsa). */
export const MLDSA65_ECDSA_P384 = 0x0908;

/** Every scheme qsign knows, in its default preference order (post-quantum first). */
export const SCHEMES: readonly SchemeInfo[] = [
  {
    code: 0x0905,
    name: "mldsa65",
    pq: true,
    key: "ML-DSA-65",
    algorithm: "ML-DSA-65",
    handshake: true,
  },
  {
    code: 0x0906,
    name: "mldsa87",
    pq: true,
    key: "ML-DSA-87",
    algorithm: "ML-DSA-87",
    handshake: true,
  },
  {
    code: 0x0904,
    name: "mldsa44",
    pq: true,
    key: "ML-DSA-44",
    algorithm: "ML-DSA-44",
    handshake: true,
  },
  {
    code: MLDSA65_ECDSA_P384,
    name: "mldsa65_ecdsa_secp384r1_sha384",
    pq: true,
    key: "MLDSA65-ECDSA-P384",
    handshake: true,
  },
  {
    code: 0x0503,
    name: "ecdsa_secp384r1_sha384",
    pq: false,
    key: "ECDSA-P384",
    algorithm: "ECDSA-P384-SHA384",
    handshake: true,
  },
  {
    code: 0x0403,
    name: "ecdsa_secp256r1_sha256",
    pq: false,
    key: "ECDSA-P256",
    algorithm: "ECDSA-P256-SHA256",
    handshake: true,
  },
  {
    code: 0x0807,
    name: "ed25519",
    pq: false,
    key: "Ed25519",
    algorithm: "Ed25519",
    handshake: true,
  },
  {
    code: 0x0804,
    name: "rsa_pss_rsae_sha256",
    pq: false,
    key: "RSA",
    algorithm: "RSA-PSS-SHA256",
    handshake: true,
  },
  {
    code: 0x0805,
    name: "rsa_pss_rsae_sha384",
    pq: false,
    key: "RSA",
    algorithm: "RSA-PSS-SHA384",
    handshake: true,
  },
  {
    code: 0x0806,
    name: "rsa_pss_rsae_sha512",
    pq: false,
    key: "RSA",
    algorithm: "RSA-PSS-SHA512",
    handshake: true,
  },
  {
    code: 0x0809,
    name: "rsa_pss_pss_sha256",
    pq: false,
    key: "RSA-PSS",
    algorithm: "RSA-PSS-SHA256",
    handshake: true,
  },
  {
    code: 0x080a,
    name: "rsa_pss_pss_sha384",
    pq: false,
    key: "RSA-PSS",
    algorithm: "RSA-PSS-SHA384",
    handshake: true,
  },
  {
    code: 0x080b,
    name: "rsa_pss_pss_sha512",
    pq: false,
    key: "RSA-PSS",
    algorithm: "RSA-PSS-SHA512",
    handshake: true,
  },
  {
    code: 0x0401,
    name: "rsa_pkcs1_sha256",
    pq: false,
    key: "RSA",
    algorithm: "RSA-PKCS1-SHA256",
    handshake: false,
  },
  {
    code: 0x0501,
    name: "rsa_pkcs1_sha384",
    pq: false,
    key: "RSA",
    algorithm: "RSA-PKCS1-SHA384",
    handshake: false,
  },
];

const BY_CODE = new Map(SCHEMES.map((s) => [s.code, s]));

export function schemeInfo(code: SignatureScheme): SchemeInfo | undefined {
  return BY_CODE.get(code);
}

/**
 * Names of the SignatureScheme registry's code points qsign does not implement (IANA TLS
 * SignatureScheme, and the TLS 1.2 hash/signature pairs clients still offer), for logs.
 */
const OTHER_SCHEME_NAMES: ReadonlyMap<number, string> = new Map([
  [0x0101, "rsa_md5"],
  [0x0102, "dsa_md5"],
  [0x0103, "ecdsa_md5"],
  [0x0201, "rsa_pkcs1_sha1"],
  [0x0202, "dsa_sha1"],
  [0x0203, "ecdsa_sha1"],
  [0x0301, "rsa_pkcs1_sha224"],
  [0x0302, "dsa_sha224"],
  [0x0303, "ecdsa_sha224"],
  [0x0402, "dsa_sha256"],
  [0x0420, "rsa_pkcs1_sha256_legacy"],
  [0x0502, "dsa_sha384"],
  [0x0520, "rsa_pkcs1_sha384_legacy"],
  [0x0601, "rsa_pkcs1_sha512"],
  [0x0602, "dsa_sha512"],
  [0x0603, "ecdsa_secp521r1_sha512"],
  [0x0620, "rsa_pkcs1_sha512_legacy"],
  [0x0704, "eccsi_sha256"],
  [0x0705, "iso_ibs1"],
  [0x0706, "iso_ibs2"],
  [0x0707, "iso_chinese_ibs"],
  [0x0708, "sm2sig_sm3"],
  [0x0709, "gostr34102012_256a"],
  [0x070a, "gostr34102012_256b"],
  [0x070b, "gostr34102012_256c"],
  [0x070c, "gostr34102012_256d"],
  [0x070d, "gostr34102012_512a"],
  [0x070e, "gostr34102012_512b"],
  [0x070f, "gostr34102012_512c"],
  [0x0808, "ed448"],
  [0x081a, "ecdsa_brainpoolP256r1tls13_sha256"],
  [0x081b, "ecdsa_brainpoolP384r1tls13_sha384"],
  [0x081c, "ecdsa_brainpoolP512r1tls13_sha512"],
]);

/** A readable name for a scheme code point: every registered one by name, GREASE as `grease`. */
export function schemeName(code: SignatureScheme): string {
  return BY_CODE.get(code)?.name ?? OTHER_SCHEME_NAMES.get(code) ??
    (isGrease(code) ? "grease" : `0x${code.toString(16).padStart(4, "0")}`);
}

/** The scheme for a name (`mldsa65`, `ecdsa_secp384r1_sha384`, …). */
export function schemeByName(name: string): SchemeInfo | undefined {
  return SCHEMES.find((s) => s.name === name.toLowerCase());
}

/**
 * The signature_algorithms qsign offers: every handshake scheme, or only the post-quantum ones
 * when the peer must authenticate with PQ.
 */
export function offeredSchemes(pqOnly: boolean): SignatureScheme[] {
  return SCHEMES.filter((s) => s.handshake && (s.pq || !pqOnly)).map((s) => s.code);
}

/**
 * The signature_algorithms a client offers: the schemes `names` lists (names as in SCHEMES, in
 * the order given, which is the order the server picks in), or `offeredSchemes(pqOnly)` when
 * there are none. Throws RangeError naming a scheme that is unknown, cannot sign a
 * CertificateVerify, or is classical while `pqOnly`.
 */
export function resolveSchemes(
  names: readonly string[] | undefined,
  pqOnly: boolean,
): SignatureScheme[] {
  if (!names?.length) return offeredSchemes(pqOnly);
  const chosen = names.map((name) => {
    const scheme = schemeByName(name);
    if (!scheme?.handshake) {
      const known = SCHEMES.filter((s) => s.handshake).map((s) => s.name).join(", ");
      throw new RangeError(
        scheme
          ? `signature scheme ${name} signs certificates only, not a handshake (known: ${known})`
          : `unknown signature scheme ${name} (known: ${known})`,
      );
    }
    if (pqOnly && !scheme.pq) {
      throw new RangeError(
        `signature scheme ${name} is classical; requirePqAuth accepts post-quantum ones only`,
      );
    }
    return scheme.code;
  });
  return [...new Set(chosen)];
}

/** signature_algorithms_cert: every scheme a certificate in the peer's chain may be signed with. */
export function offeredCertSchemes(pqOnly: boolean): SignatureScheme[] {
  return SCHEMES.filter((s) => s.pq || !pqOnly).map((s) => s.code);
}

const OID_KIND: Record<string, KeyKind> = {
  "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
  "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
  "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
  "1.2.840.113549.1.1.1": "RSA",
  "1.2.840.113549.1.1.10": "RSA-PSS",
  "1.3.101.112": "Ed25519",
  // id-MLDSA65-ECDSA-P384-SHA512 (draft-ietf-lamps-pq-composite-sigs)
  "1.3.6.1.5.5.7.6.46": "MLDSA65-ECDSA-P384",
};

const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const EC_CURVE_KIND: Record<string, KeyKind> = {
  "1.2.840.10045.3.1.7": "ECDSA-P256",
  "1.3.132.0.34": "ECDSA-P384",
};

/**
 * The key kind of a certificate's public key (the daemon's own leaves are read with
 * @peculiar/x509, peers' with CertificateView), or undefined for one TLS cannot use.
 */
export function keyKind(cert: X509Certificate | CertificateView): KeyKind | undefined {
  try {
    const spki = cert instanceof CertificateView
      ? cert.subjectPublicKeyInfo
      : new Uint8Array(cert.publicKey.rawData);
    const { oid, parameters } = readSubjectPublicKeyInfo(spki).algorithm;
    if (oid !== EC_PUBLIC_KEY) return OID_KIND[oid];
    const curve = parameters && decodeOid(tlvContent(parameters, readTlv(parameters)));
    return curve === undefined ? undefined : EC_CURVE_KIND[curve];
  } catch {
    return undefined;
  }
}

/** The handshake schemes a key of `kind` can make. */
export function schemesForKey(kind: KeyKind): SignatureScheme[] {
  return SCHEMES.filter((s) => s.handshake && s.key === kind).map((s) => s.code);
}

const CERT_SIGNATURE_SCHEME: Record<string, SignatureScheme> = {
  "2.16.840.1.101.3.4.3.17": 0x0904,
  "2.16.840.1.101.3.4.3.18": 0x0905,
  "2.16.840.1.101.3.4.3.19": 0x0906,
  "1.3.6.1.5.5.7.6.46": MLDSA65_ECDSA_P384,
  "1.2.840.10045.4.3.2": 0x0403,
  "1.2.840.10045.4.3.3": 0x0503,
  "1.2.840.113549.1.1.11": 0x0401,
  "1.2.840.113549.1.1.12": 0x0501,
  "1.3.101.112": 0x0807,
};

/**
 * The TLS scheme that names the signature on `cert` (for signature_algorithms_cert), or
 * undefined when there is none (e.g. an RSA-PSS certificate signature: checked by the verifier).
 */
export function certificateSignatureScheme(cert: CertificateView): SignatureScheme | undefined {
  return CERT_SIGNATURE_SCHEME[cert.signatureAlgorithm.oid];
}

/** True when `cert` is signed with a post-quantum algorithm. */
export function isPqCertificateSignature(cert: CertificateView): boolean {
  const scheme = certificateSignatureScheme(cert);
  return scheme !== undefined && (schemeInfo(scheme)?.pq ?? false);
}

/**
 * Verifies a signature made with `scheme` by the key in `spki` over `message`. Returns false
 * for a bad signature or a key the scheme cannot use.
 */
export async function verifySignature(
  scheme: SignatureScheme,
  spki: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const info = schemeInfo(scheme);
  if (!info) return false;
  try {
    if (!info.algorithm) return await compositeVerify(spki, message, signature);
    // The provider imports RSA keys in their rsaEncryption form only.
    const key = info.key === "RSA-PSS" ? asWebCryptoKeyInfo(spki) : spki;
    return await getCryptoProvider().signature(info.algorithm).verify(key, message, signature);
  } catch (e) {
    if (e instanceof InvalidPublicValueError) return false;
    throw e;
  }
}
