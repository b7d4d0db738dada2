/**
 * Building certificates, CRLs and CSRs with @peculiar/x509, signed by any `TbsSigner` (a file
 * key, a composite pair, an HSM key), and the names and extensions the QSIGN PKI puts in them.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { UsageError } from "../errors.ts";
import { toHex } from "../hex.ts";
import { bufferSource, encodeUnsignedInteger } from "./der.ts";
import type { TbsSigner } from "./keys.ts";

/**
 * The arguments @peculiar/x509's generators need to sign with `signer`: they hand the
 * to-be-signed bytes to `crypto.subtle.sign`, so a small Crypto answers that call (and the
 * public-key export a CSR needs) with the signer, and passes everything else to WebCrypto.
 */
export function generatorSigning(signer: TbsSigner): {
  crypto: Crypto;
  signingKey: CryptoKey;
  publicKey: CryptoKey;
  signingAlgorithm: Algorithm;
} {
  const handle = (type: KeyType) =>
    ({ algorithm: signer.algorithm, type, extractable: false, usages: [] }) as unknown as CryptoKey;
  const subtle = {
    sign: async (_algorithm: unknown, _key: unknown, data: BufferSource) =>
      toArrayBuffer(await signer.sign(bufferSourceBytes(data))),
    exportKey: (format: string) => {
      if (format !== "spki") throw new Error(`cannot export a signer key as ${format}`);
      return Promise.resolve(toArrayBuffer(signer.spki));
    },
    digest: (algorithm: AlgorithmIdentifier, data: BufferSource) =>
      crypto.subtle.digest(algorithm, data),
  };
  const signingCrypto = {
    subtle,
    getRandomValues: (array: Uint8Array<ArrayBuffer>) => crypto.getRandomValues(array),
  } as unknown as Crypto;
  return {
    crypto: signingCrypto,
    signingKey: handle("private"),
    publicKey: handle("public"),
    signingAlgorithm: signer.algorithm,
  };
}

function bufferSourceBytes(data: BufferSource): Uint8Array {
  return ArrayBuffer.isView(data)
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : new Uint8Array(data);
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer;
}

/** A random positive 16-byte serial number, as hex. */
export function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  // Positive (top bit clear) and exactly 16 bytes long in DER (top byte non-zero).
  bytes[0] = (bytes[0] & 0x7f) || 0x01;
  return toHex(bytes);
}

/** A subjectAltName entry as typed on the command line: `DNS:…`, `IP:…`, `URI:…`, `EMAIL:…`. */
export function parseSubjectAltName(text: string): x509.JsonGeneralName {
  const match = /^(DNS|IP|URI|EMAIL):(.+)$/i.exec(text.trim());
  if (!match) {
    throw new UsageError(`subject alternative name "${text}": expected DNS:, IP:, URI: or EMAIL:`);
  }
  const kind = match[1].toUpperCase();
  const value = match[2];
  if (kind === "IP") {
    const address = normalizeIp(value);
    if (!address) throw new UsageError(`subject alternative name "${text}": not an IP address`);
    return { type: "ip", value: address };
  }
  if (kind === "DNS") {
    if (
      !/^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.?$/i.test(
        value,
      )
    ) {
      throw new UsageError(`subject alternative name "${text}": not a DNS name`);
    }
    return { type: "dns", value: value.toLowerCase() };
  }
  if (kind === "URI") {
    if (!URL.canParse(value)) throw new UsageError(`subject alternative name "${text}": not a URI`);
    return { type: "url", value };
  }
  return { type: "email", value };
}

/** The canonical text of an IPv4 or IPv6 address, or undefined when `text` is neither. */
export function normalizeIp(text: string): string | undefined {
  const bare = text.replace(/^\[(.*)\]$/, "$1");
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(bare)) {
    return bare.split(".").every((o) => Number(o) <= 255)
      ? bare.split(".").map(Number).join(".")
      : undefined;
  }
  if (!bare.includes(":")) return undefined;
  try {
    return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/** What makes a certificate a CA, an end entity, or something odd (tests build the odd ones). */
export interface CertificateProfile {
  subject: string;
  /** The subject's public key (SubjectPublicKeyInfo DER). */
  spki: Uint8Array;
  /** The issuer certificate; absent for a self-signed certificate. */
  issuer?: x509.X509Certificate;
  /** Signs the certificate: the issuer's key (or the subject's own, self-signed). */
  signer: TbsSigner;
  serial?: string;
  notBefore: Date;
  notAfter: Date;
  /** Present for a CA: `pathLength` undefined means unlimited. */
  ca?: { pathLength?: number };
  keyUsage: x509.KeyUsageFlags;
  extendedKeyUsage?: string[];
  subjectAltNames?: x509.JsonGeneralName[];
  /** Extensions added as they are (name constraints, anything a test needs). */
  extraExtensions?: x509.Extension[];
}

/** Creates and signs a certificate with SKI/AKI, basic constraints and key usage per RFC 5280. */
export async function createCertificate(
  profile: CertificateProfile,
): Promise<x509.X509Certificate> {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(!!profile.ca, profile.ca?.pathLength, true),
    new x509.KeyUsagesExtension(profile.keyUsage, true),
    await x509.SubjectKeyIdentifierExtension.create(bufferSource(profile.spki)),
  ];
  const issuerKeyId = profile.issuer
    ? profile.issuer.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId
    : undefined;
  if (issuerKeyId) extensions.push(new x509.AuthorityKeyIdentifierExtension(issuerKeyId));
  if (profile.extendedKeyUsage?.length) {
    extensions.push(new x509.ExtendedKeyUsageExtension(profile.extendedKeyUsage, false));
  }
  if (profile.subjectAltNames?.length) {
    extensions.push(new x509.SubjectAlternativeNameExtension(profile.subjectAltNames, false));
  }
  extensions.push(...profile.extraExtensions ?? []);
  const signing = generatorSigning(profile.signer);
  return await x509.X509CertificateGenerator.create(
    {
      serialNumber: profile.serial ?? randomSerial(),
      subject: profile.subject,
      issuer: profile.issuer ? profile.issuer.subjectName : profile.subject,
      notBefore: profile.notBefore,
      notAfter: profile.notAfter,
      publicKey: bufferSource(profile.spki),
      signingKey: signing.signingKey,
      signingAlgorithm: signing.signingAlgorithm,
      extensions,
    },
    signing.crypto,
  );
}

/** Creates a PKCS#10 request for `subject`, signed by `signer` (which may be an HSM key). */
export async function createCertificateRequest(options: {
  subject: string;
  signer: TbsSigner;
  subjectAltNames?: x509.JsonGeneralName[];
}): Promise<x509.Pkcs10CertificateRequest> {
  const signing = generatorSigning(options.signer);
  const extensions = options.subjectAltNames?.length
    ? [new x509.SubjectAlternativeNameExtension(options.subjectAltNames, false)]
    : [];
  return await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: options.subject,
      keys: { privateKey: signing.signingKey, publicKey: signing.publicKey },
      signingAlgorithm: signing.signingAlgorithm,
      extensions,
    },
    signing.crypto,
  );
}

/** Creates a CRL signed by `signer` for the CA certificate `issuer`. */
export async function createCrl(options: {
  issuer: x509.X509Certificate;
  signer: TbsSigner;
  thisUpdate: Date;
  nextUpdate: Date;
  crlNumber: number;
  entries: { serial: string; revokedAt: Date; reason?: x509.X509CrlReason }[];
}): Promise<x509.X509Crl> {
  const signing = generatorSigning(options.signer);
  const keyId = options.issuer.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const extensions: x509.Extension[] = [
    new x509.Extension(
      CRL_NUMBER_OID,
      false,
      bufferSource(derInteger(options.crlNumber)),
    ),
  ];
  if (keyId) extensions.push(new x509.AuthorityKeyIdentifierExtension(keyId));
  return await x509.X509CrlGenerator.create(
    {
      issuer: options.issuer.subjectName,
      thisUpdate: options.thisUpdate,
      nextUpdate: options.nextUpdate,
      signingKey: signing.signingKey,
      signingAlgorithm: signing.signingAlgorithm,
      extensions,
      entries: options.entries.map((e) => ({
        serialNumber: e.serial,
        revocationDate: e.revokedAt,
        reason: e.reason,
      })),
    },
    signing.crypto,
  );
}

export const CRL_NUMBER_OID = "2.5.29.20";

function derInteger(n: number): Uint8Array {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return encodeUnsignedInteger(new Uint8Array(bytes.length ? bytes : [0]));
}
