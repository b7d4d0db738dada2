/**
 * Checking the signature on a certificate, CRL or CSR against an issuer's public key: ML-DSA,
 * composite ML-DSA-65 + ECDSA-P384, ECDSA, RSA-PSS, RSA PKCS#1 v1.5 (Vault and legacy chains)
 * and Ed25519. Imported WebCrypto keys are cached per public key object, so a trust anchor's key
 * is imported once however many handshakes it verifies.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier as AsnAlgorithmIdentifier } from "@peculiar/asn1-x509";
import { COMPOSITE_MLDSA65_ECDSA_P384_OID, compositeVerify } from "../crypto/composite.ts";
import { CertificateView, readSubjectPublicKeyInfo } from "./certificate_view.ts";
import { children, decodeOid, readTlv, Tag, tlvContent } from "../crypto/der.ts";
import { asWebCryptoKeyInfo, bufferSource, toBeSigned } from "./der.ts";

type SignedObject =
  | x509.X509Certificate
  | x509.X509Crl
  | x509.Pkcs10CertificateRequest
  | CertificateView;

const keyCache = new WeakMap<x509.PublicKey, Map<string, Promise<CryptoKey>>>();
const ecdsaFormatter = new x509.AsnEcSignatureFormatter();
const algorithmProvider = new x509.AlgorithmProvider();
/**
 * WebCrypto forms of signature AlgorithmIdentifiers, by DER: a trust store meets a handful of
 * algorithms, and mapping one takes an ASN.1 parse.
 */
const webAlgorithms = new Map<string, Algorithm>();
/** Issuer keys of certificates read with CertificateView, made when first needed. */
const viewKeys = new WeakMap<CertificateView, x509.PublicKey>();

/** The signed bytes, signature and WebCrypto algorithm of `signed`. */
function signedParts(
  signed: SignedObject,
): { tbs: Uint8Array; signature: Uint8Array; alg: Algorithm } {
  if (!(signed instanceof CertificateView)) {
    return {
      tbs: toBeSigned(new Uint8Array(signed.rawData)),
      signature: new Uint8Array(signed.signature),
      alg: signed.signatureAlgorithm,
    };
  }
  const der = signed.signatureAlgorithm.der;
  const key = String.fromCharCode(...der);
  let alg = webAlgorithms.get(key);
  if (!alg) {
    alg = algorithmProvider.toWebAlgorithm(AsnConvert.parse(der, AsnAlgorithmIdentifier));
    webAlgorithms.set(key, alg);
  }
  return { tbs: signed.tbsCertificate, signature: signed.signatureValue, alg };
}

/** The public key of an issuer certificate read with CertificateView, parsed once. */
function viewKey(issuer: CertificateView): x509.PublicKey {
  let key = viewKeys.get(issuer);
  if (!key) {
    viewKeys.set(issuer, key = new x509.PublicKey(bufferSource(issuer.subjectPublicKeyInfo)));
  }
  return key;
}

/** The name of a signature algorithm for messages: `ML-DSA-65`, `ECDSA/SHA-384`, an OID. */
export function signatureAlgorithmName(signed: SignedObject): string {
  const alg = signed.signatureAlgorithm as Algorithm & { hash?: Algorithm | string };
  if (alg.name === COMPOSITE_MLDSA65_ECDSA_P384_OID) return "MLDSA65-ECDSA-P384-SHA512 (composite)";
  const hash = hashName(alg.hash);
  return hash ? `${alg.name}/${hash}` : alg.name;
}

function hashName(hash: Algorithm | string | undefined): string | undefined {
  return typeof hash === "string" ? hash : hash?.name;
}

/**
 * True when `signed` carries a valid signature by `issuerKey`. False for a wrong key, a key of
 * another type, a malformed signature or an algorithm qsign does not know.
 */
export async function verifySignature(
  signed: SignedObject,
  issuer: x509.PublicKey | CertificateView,
): Promise<boolean> {
  try {
    const issuerKey = issuer instanceof CertificateView ? viewKey(issuer) : issuer;
    const parts = signedParts(signed);
    const { tbs, signature } = parts;
    const alg = parts.alg as Algorithm & {
      hash?: Algorithm | string;
      saltLength?: number;
    };
    if (alg.name === COMPOSITE_MLDSA65_ECDSA_P384_OID) {
      return await compositeVerify(new Uint8Array(issuerKey.rawData), tbs, signature);
    }
    const hash = hashName(alg.hash);
    switch (alg.name) {
      case "ML-DSA-44":
      case "ML-DSA-65":
      case "ML-DSA-87":
      case "Ed25519":
        return await verifyWith(issuerKey, { name: alg.name }, { name: alg.name }, signature, tbs);
      case "EdDSA":
        return await verifyWith(
          issuerKey,
          { name: "Ed25519" },
          { name: "Ed25519" },
          signature,
          tbs,
        );
      case "ECDSA": {
        const namedCurve = (issuerKey.algorithm as EcKeyAlgorithm).namedCurve;
        const raw = ecdsaFormatter.toWebSignature(
          { name: "ECDSA", namedCurve } as Algorithm,
          bufferSource(signature),
        );
        if (!raw || !hash) return false;
        return await verifyWith(
          issuerKey,
          { name: "ECDSA", namedCurve } as EcKeyImportParams,
          { name: "ECDSA", hash } as EcdsaParams,
          new Uint8Array(raw),
          tbs,
        );
      }
      case "RSASSA-PKCS1-v1_5":
        if (!hash) return false;
        return await verifyWith(
          issuerKey,
          { name: alg.name, hash } as RsaHashedImportParams,
          {
            name: alg.name,
          },
          signature,
          tbs,
        );
      case "RSA-PSS":
        if (!hash) return false;
        return await verifyWith(
          issuerKey,
          { name: "RSA-PSS", hash } as RsaHashedImportParams,
          { name: "RSA-PSS", saltLength: alg.saltLength ?? 20 } as RsaPssParams,
          signature,
          tbs,
        );
      default:
        return false;
    }
  } catch {
    return false;
  }
}

async function verifyWith(
  issuerKey: x509.PublicKey,
  importAlgorithm: AlgorithmIdentifier | RsaHashedImportParams | EcKeyImportParams,
  verifyAlgorithm: AlgorithmIdentifier | RsaPssParams | EcdsaParams,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  const key = await importCached(issuerKey, importAlgorithm);
  return await crypto.subtle.verify(
    verifyAlgorithm,
    key,
    bufferSource(signature),
    bufferSource(data),
  );
}

function importCached(
  issuerKey: x509.PublicKey,
  algorithm: AlgorithmIdentifier | RsaHashedImportParams | EcKeyImportParams,
): Promise<CryptoKey> {
  let perKey = keyCache.get(issuerKey);
  if (!perKey) keyCache.set(issuerKey, perKey = new Map());
  const cacheKey = JSON.stringify(algorithm);
  let key = perKey.get(cacheKey);
  if (!key) {
    // An id-RSASSA-PSS key may only make RSA-PSS signatures; WebCrypto imports it as
    // rsaEncryption.
    const name = typeof algorithm === "string" ? algorithm : algorithm.name;
    const spki = new Uint8Array(issuerKey.rawData);
    const importable = name === "RSA-PSS" ? asWebCryptoKeyInfo(spki) : spki;
    key = crypto.subtle.importKey("spki", bufferSource(importable), algorithm, false, [
      "verify",
    ]);
    // A failed import is not cached: the next caller gets the same failure afresh.
    key.catch(() => perKey.delete(cacheKey));
    perKey.set(cacheKey, key);
  }
  return key;
}

/** Signature algorithms `verifySignature` checks (RFC 5280 §4.1.1.2 algorithm OIDs). */
const SIGNATURE_ALGORITHMS = new Set([
  "2.16.840.1.101.3.4.3.17", // ML-DSA-44
  "2.16.840.1.101.3.4.3.18", // ML-DSA-65
  "2.16.840.1.101.3.4.3.19", // ML-DSA-87
  COMPOSITE_MLDSA65_ECDSA_P384_OID,
  "1.2.840.10045.4.3.2", // ecdsa-with-SHA256
  "1.2.840.10045.4.3.3", // ecdsa-with-SHA384
  "1.2.840.10045.4.3.4", // ecdsa-with-SHA512
  "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
  "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
  "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
  "1.2.840.113549.1.1.10", // RSASSA-PSS
  "1.3.101.112", // Ed25519
]);

/** True when `oid` names a signature algorithm qsign verifies (SHA-1 and MD5 ones are not). */
export function isSupportedSignatureAlgorithm(oid: string): boolean {
  return SIGNATURE_ALGORITHMS.has(oid);
}

const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const RSA_KEYS = new Set(["1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"]);
const DSA_KEY = "1.2.840.10040.4.1";
const NAMED_CURVES: Record<string, string> = {
  "1.2.840.10045.3.1.7": "P-256",
  "1.3.132.0.34": "P-384",
  "1.3.132.0.35": "P-521",
};
const OTHER_KEYS = new Set([
  "2.16.840.1.101.3.4.3.17",
  "2.16.840.1.101.3.4.3.18",
  "2.16.840.1.101.3.4.3.19",
  COMPOSITE_MLDSA65_ECDSA_P384_OID,
  "1.3.101.112",
]);

/**
 * Why a subject public key is outside the profile (CA/Browser Forum Baseline Requirements
 * §6.1.5: RSA of at least 2048 bits with a modulus a whole number of octets, ECDSA on P-256,
 * P-384 or P-521; no DSA), or undefined when it is one qsign accepts: those, ML-DSA, composite
 * ML-DSA-65 + ECDSA-P384 and Ed25519.
 */
export function publicKeyProblem(spki: Uint8Array): string | undefined {
  let key;
  try {
    key = readSubjectPublicKeyInfo(spki);
  } catch (e) {
    return `public key cannot be parsed (${(e as Error).message})`;
  }
  const oid = key.algorithm.oid;
  if (OTHER_KEYS.has(oid)) return undefined;
  if (oid === DSA_KEY) return "DSA keys are not accepted";
  try {
    if (RSA_KEYS.has(oid)) {
      // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
      const outer = readTlv(key.publicKey);
      const [n] = outer.tag === Tag.sequence ? children(key.publicKey, outer) : [];
      if (n?.tag !== Tag.integer) throw new Error("not an RSAPublicKey");
      const modulus = tlvContent(key.publicKey, n);
      let start = 0;
      while (start < modulus.length && modulus[start] === 0) start++;
      const top = modulus[start] ?? 0;
      const bits = (modulus.length - start - 1) * 8 + (top ? 32 - Math.clz32(top) : 0);
      if (bits < 2048) return `RSA key of ${bits} bits, below 2048`;
      if (bits % 8) return `RSA modulus of ${bits} bits is not a whole number of octets`;
      return undefined;
    }
    if (oid === EC_PUBLIC_KEY) {
      const parameters = key.algorithm.parameters;
      const curve = parameters?.[0] === Tag.oid
        ? decodeOid(tlvContent(parameters, readTlv(parameters)))
        : undefined;
      if (curve && NAMED_CURVES[curve]) return undefined;
      return `EC key on ${
        curve ? `curve ${curve}` : "an unnamed curve"
      }; P-256, P-384 or P-521 only`;
    }
  } catch (e) {
    return `public key cannot be parsed (${(e as Error).message})`;
  }
  return `public key algorithm ${oid} is not supported`;
}
