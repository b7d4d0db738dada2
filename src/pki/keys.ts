/**
 * Private keys of the QSIGN PKI: generation, key files (read in every format of key_formats.ts,
 * written as PKCS#8 PEM, encrypted with a passphrase or not, mode 0600, atomically) and the
 * WebCrypto keys that sign certificates, CRLs and CSRs.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { QsignError } from "../errors.ts";
import { writeFileAtomic } from "../fsutil.ts";
import {
  COMPOSITE_MLDSA65_ECDSA_P384_OID,
  CompositeKeyError,
  type CompositePrivateKeyParts,
  compositePublicKey,
  compositePublicKeySpki,
  compositeSign,
  decodeCompositePrivateKey,
  ecdsaP384Signer,
  encodeCompositePrivateKey,
  generateCompositeKeyParts,
  importEcdsaP384Scalar,
  mldsa65SeedSigner,
  splitCompositePublicKey,
} from "../crypto/composite.ts";
import {
  asRsaPssKeyInfo,
  asWebCryptoKeyInfo,
  bufferSource,
  children,
  isRsaPssKeyInfo,
  readTlv,
  tlvBytes,
  tlvContent,
} from "./der.ts";
import {
  decodeKeyFile,
  encryptPrivateKeyInfo,
  KeyFileError,
  type PassphraseSource,
} from "./key_formats.ts";
import { pemEncode, readInputFile } from "./pem.ts";

export { KeyFileError, type PassphraseSource };

/** Key algorithms of `qsign pki --alg`. */
export const KEY_ALGORITHMS = [
  "mldsa44",
  "mldsa65",
  "mldsa87",
  "ecdsa-p256",
  "ecdsa-p384",
  "rsa-3072",
  "rsa-pss-3072",
  "ed25519",
  "mldsa65-ecdsa-p384",
] as const;
export type KeyAlgorithm = typeof KEY_ALGORITHMS[number];
export const DEFAULT_KEY_ALGORITHM: KeyAlgorithm = "mldsa65";

/** What signs X.509 structures for @peculiar/x509's generators. */
export interface TbsSigner {
  /**
   * The algorithm as @peculiar/x509 maps it to an AlgorithmIdentifier, e.g.
   * `{name: "ECDSA", hash: "SHA-384", namedCurve: "P-384"}`, `{name: "ML-DSA-65"}`, or the dotted
   * OID as the name for algorithms it does not know (composite).
   */
  readonly algorithm: Algorithm & { hash?: string; namedCurve?: string };
  /** The signer's SubjectPublicKeyInfo DER. */
  readonly spki: Uint8Array;
  /** Signs the to-be-signed bytes; ECDSA signatures in WebCrypto form (r||s). */
  sign(tbs: Uint8Array): Promise<Uint8Array>;
}

interface LoadedKeyBase extends TbsSigner {
  readonly pkcs8: Uint8Array;
}

/** A single-algorithm key, with its WebCrypto key pair. */
export interface SingleLoadedKey extends LoadedKeyBase {
  readonly algorithm: Algorithm & { hash?: string; namedCurve?: string };
  readonly keyAlgorithm: Exclude<KeyAlgorithm, "mldsa65-ecdsa-p384">;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

/** A composite ML-DSA-65 + ECDSA-P384 key: both halves. */
export interface CompositeLoadedKey extends LoadedKeyBase {
  readonly keyAlgorithm: "mldsa65-ecdsa-p384";
  readonly parts: CompositePrivateKeyParts;
  /** The P-384 half as a WebCrypto signing key. */
  readonly ecdsaPrivateKey: CryptoKey;
}

/**
 * A private key loaded from PKCS#8: its algorithm, SubjectPublicKeyInfo, PKCS#8 DER, the
 * WebCrypto key(s), and a `sign` over X.509 to-be-signed bytes.
 */
export type LoadedPrivateKey = SingleLoadedKey | CompositeLoadedKey;

interface SingleSpec {
  generate: AlgorithmIdentifier | RsaHashedKeyGenParams | EcKeyGenParams;
  import: AlgorithmIdentifier | RsaHashedImportParams | EcKeyImportParams;
  sign: Algorithm & { hash?: string; namedCurve?: string };
}

const SINGLE: Record<Exclude<KeyAlgorithm, "mldsa65-ecdsa-p384">, SingleSpec> = {
  mldsa44: mldsa("ML-DSA-44"),
  mldsa65: mldsa("ML-DSA-65"),
  mldsa87: mldsa("ML-DSA-87"),
  "ecdsa-p256": ecdsa("P-256", "SHA-256"),
  "ecdsa-p384": ecdsa("P-384", "SHA-384"),
  // Certificates are signed with PKCS#1 v1.5 (sha256WithRSAEncryption), the form every verifier
  // takes; the same rsaEncryption key signs TLS handshakes with RSA-PSS.
  "rsa-3072": {
    generate: {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 3072,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    sign: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  },
  // An id-RSASSA-PSS key (RFC 4055), as TLS's rsa_pss_pss_* schemes require: it signs
  // certificates with RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) and handshakes with
  // rsa_pss_pss_sha256/384. Its SPKI and PKCS#8 carry the PSS OID (see der.ts).
  "rsa-pss-3072": {
    generate: {
      name: "RSA-PSS",
      modulusLength: 3072,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    import: { name: "RSA-PSS", hash: "SHA-256" },
    sign: { name: "RSA-PSS", hash: "SHA-256", saltLength: 32 } as Algorithm,
  },
  ed25519: {
    generate: { name: "Ed25519" },
    import: { name: "Ed25519" },
    sign: { name: "Ed25519" },
  },
};

function mldsa(name: string): SingleSpec {
  return { generate: { name }, import: { name }, sign: { name } };
}

function ecdsa(namedCurve: string, hash: string): SingleSpec {
  return {
    generate: { name: "ECDSA", namedCurve },
    import: { name: "ECDSA", namedCurve },
    sign: { name: "ECDSA", hash, namedCurve },
  };
}

/** Generates a fresh key pair. */
export async function generateKeyPair(alg: KeyAlgorithm): Promise<LoadedPrivateKey> {
  if (alg === "mldsa65-ecdsa-p384") return await compositeKey(generateCompositeKeyParts());
  const spec = SINGLE[alg];
  const pair = await crypto.subtle.generateKey(spec.generate, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  return await singleKey(alg, pair.privateKey, pair.publicKey);
}

/**
 * Parses a private key in any format key_formats.ts reads (PKCS#8, SEC1, PKCS#1, encrypted
 * PKCS#8, PKCS#12; PEM or DER). `source` names the key in errors; `passphrase` is asked only
 * for an encrypted file.
 */
export async function parsePrivateKey(
  input: Uint8Array | string,
  source = "private key",
  passphrase?: PassphraseSource,
): Promise<LoadedPrivateKey> {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  return await importPkcs8((await decodeKeyFile(bytes, source, passphrase)).pkcs8, source);
}

/** Imports PKCS#8 PrivateKeyInfo DER. */
async function importPkcs8(der: Uint8Array, source: string): Promise<LoadedPrivateKey> {
  const oid = privateKeyAlgorithmOid(der, source);
  if (oid === COMPOSITE_MLDSA65_ECDSA_P384_OID) {
    try {
      return await compositeKey(decodeCompositePrivateKey(der));
    } catch (e) {
      if (e instanceof CompositeKeyError) throw new KeyFileError(source, e.message, { cause: e });
      throw e;
    }
  }
  // An EC key names its curve inside; try each curve's import until one takes it.
  let importError: Error | undefined;
  for (const alg of candidatesForOid(oid)) {
    const spec = SINGLE[alg];
    try {
      const privateKey = await crypto.subtle.importKey(
        "pkcs8",
        bufferSource(asWebCryptoKeyInfo(der)),
        spec.import,
        true,
        ["sign"],
      );
      if (!matchesCurve(alg, privateKey)) continue;
      return await singleKey(alg, privateKey, await publicKeyOf(privateKey, spec.import));
    } catch (e) {
      importError = e as Error;
    }
  }
  throw new KeyFileError(
    source,
    importError ? `cannot import key (${importError.message})` : `unsupported key algorithm ${oid}`,
    { cause: importError },
  );
}

const OID_ALGORITHMS: Record<string, Exclude<KeyAlgorithm, "mldsa65-ecdsa-p384">[]> = {
  "2.16.840.1.101.3.4.3.17": ["mldsa44"],
  "2.16.840.1.101.3.4.3.18": ["mldsa65"],
  "2.16.840.1.101.3.4.3.19": ["mldsa87"],
  "1.2.840.10045.2.1": ["ecdsa-p256", "ecdsa-p384"],
  "1.2.840.113549.1.1.1": ["rsa-3072"],
  "1.2.840.113549.1.1.10": ["rsa-pss-3072"],
  "1.3.101.112": ["ed25519"],
};

function candidatesForOid(oid: string) {
  return OID_ALGORITHMS[oid] ?? [];
}

function matchesCurve(alg: KeyAlgorithm, key: CryptoKey): boolean {
  const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
  if (alg === "ecdsa-p256") return curve === "P-256";
  if (alg === "ecdsa-p384") return curve === "P-384";
  return true;
}

/** The public half of an extractable private key: its JWK without the private members. */
async function publicKeyOf(
  privateKey: CryptoKey,
  algorithm: SingleSpec["import"],
): Promise<CryptoKey> {
  const jwk: Record<string, unknown> = { ...await crypto.subtle.exportKey("jwk", privateKey) };
  // d (EC), p/q/dp/dq/qi/oth (RSA), priv (ML-DSA, whose JWK carries the public key as "pub").
  for (const member of ["d", "p", "q", "dp", "dq", "qi", "oth", "priv"]) delete jwk[member];
  jwk.key_ops = ["verify"];
  return await crypto.subtle.importKey("jwk", jwk as JsonWebKey, algorithm, true, ["verify"]);
}

/** The algorithm OID inside a PKCS#8 PrivateKeyInfo. */
function privateKeyAlgorithmOid(der: Uint8Array, source: string): string {
  // PrivateKeyInfo = SEQUENCE { version, AlgorithmIdentifier, OCTET STRING, ... }; the
  // AlgorithmIdentifier is the second element.
  try {
    const outer = readSequence(der);
    const algorithm = outer[1];
    const oid = readSequence(algorithm)[0];
    return decodeOid(oid);
  } catch (e) {
    throw new KeyFileError(source, "not a PKCS#8 private key", { cause: e });
  }
}

function readSequence(der: Uint8Array): Uint8Array[] {
  const outer = readTlv(der);
  if (outer.tag !== 0x30) throw new Error("not a SEQUENCE");
  return children(der, outer).map((t) => tlvBytes(der, t));
}

function decodeOid(der: Uint8Array): string {
  const tlv = readTlv(der);
  if (tlv.tag !== 0x06) throw new Error("not an OID");
  const body = tlvContent(der, tlv);
  const arcs = [Math.floor(body[0] / 40), body[0] % 40];
  let value = 0;
  for (const byte of body.subarray(1)) {
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(value);
      value = 0;
    }
  }
  return arcs.join(".");
}

async function singleKey(
  keyAlgorithm: Exclude<KeyAlgorithm, "mldsa65-ecdsa-p384">,
  privateKey: CryptoKey,
  publicKey: CryptoKey,
): Promise<SingleLoadedKey> {
  const spec = SINGLE[keyAlgorithm];
  const exported = await Promise.all([
    crypto.subtle.exportKey("pkcs8", privateKey),
    crypto.subtle.exportKey("spki", publicKey),
  ]);
  const [pkcs8, spki] = exported.map((der) =>
    keyAlgorithm === "rsa-pss-3072" ? asRsaPssKeyInfo(new Uint8Array(der)) : new Uint8Array(der)
  );
  return {
    keyAlgorithm,
    algorithm: spec.sign,
    privateKey,
    publicKey,
    pkcs8,
    spki,
    sign: async (tbs) =>
      new Uint8Array(await crypto.subtle.sign(spec.sign, privateKey, bufferSource(tbs))),
  };
}

async function compositeKey(parts: CompositePrivateKeyParts): Promise<CompositeLoadedKey> {
  const { mldsa, ecdsa } = splitCompositePublicKey(compositePublicKey(parts));
  const ecdsaPrivateKey = await importEcdsaP384Scalar(parts.ecdsaScalar);
  const mldsaSign = mldsa65SeedSigner(parts.mldsaSeed);
  const ecdsaSign = ecdsaP384Signer(ecdsaPrivateKey);
  return {
    keyAlgorithm: "mldsa65-ecdsa-p384",
    algorithm: { name: COMPOSITE_MLDSA65_ECDSA_P384_OID },
    parts,
    ecdsaPrivateKey,
    pkcs8: encodeCompositePrivateKey(parts),
    spki: compositePublicKeySpki(mldsa, ecdsa),
    sign: (tbs) => compositeSign(mldsaSign, ecdsaSign, tbs),
  };
}

/** Reads a private key file (see `parsePrivateKey`). Throws `KeyFileError` naming the file. */
export async function readPrivateKeyFile(
  path: string,
  passphrase?: PassphraseSource,
): Promise<LoadedPrivateKey> {
  return await parsePrivateKey(await readInputFile(path), path, passphrase);
}

/** The PKCS#8 PEM text of a key. */
export function privateKeyPem(key: LoadedPrivateKey): string {
  return pemEncode("PRIVATE KEY", key.pkcs8);
}

/** The `ENCRYPTED PRIVATE KEY` PEM text of a key (PBES2, see key_formats.ts). */
export async function encryptedPrivateKeyPem(
  key: LoadedPrivateKey,
  passphrase: string,
): Promise<string> {
  return pemEncode("ENCRYPTED PRIVATE KEY", await encryptPrivateKeyInfo(key.pkcs8, passphrase));
}

/**
 * Writes a key as PKCS#8 PEM, mode 0600, atomically; encrypted (PBES2, see key_formats.ts) when
 * a passphrase is given.
 */
export async function writePrivateKeyFile(
  path: string,
  key: LoadedPrivateKey,
  passphrase?: string,
): Promise<void> {
  const pem = passphrase === undefined
    ? privateKeyPem(key)
    : await encryptedPrivateKeyPem(key, passphrase);
  try {
    await writeFileAtomic(path, pem, { mode: 0o600 });
  } catch (e) {
    throw new QsignError(`${path}: cannot write private key (${(e as Error).message})`, 1, {
      cause: e,
    });
  }
}

/** The qsign key algorithm of a SubjectPublicKeyInfo, or undefined for others (e.g. Ed448). */
export function keyAlgorithmOfSpki(spki: Uint8Array): KeyAlgorithm | undefined {
  const key = new x509.PublicKey(bufferSource(spki));
  const name = key.algorithm.name;
  if (name === COMPOSITE_MLDSA65_ECDSA_P384_OID) return "mldsa65-ecdsa-p384";
  if (name === "ML-DSA-44") return "mldsa44";
  if (name === "ML-DSA-65") return "mldsa65";
  if (name === "ML-DSA-87") return "mldsa87";
  if (name === "ECDSA") {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    return curve === "P-256" ? "ecdsa-p256" : curve === "P-384" ? "ecdsa-p384" : undefined;
  }
  if (isRsaPssKeyInfo(spki)) return "rsa-pss-3072";
  if (name === "RSASSA-PKCS1-v1_5" || name === "RSA-PSS") return "rsa-3072";
  if (name === "Ed25519" || name === "EdDSA") return "ed25519";
  return undefined;
}
