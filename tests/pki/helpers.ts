/** Building test certificates, including the broken ones every verifier test needs. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { createCertificate, parseSubjectAltName } from "../../src/pki/certificate.ts";
import { generateKeyPair, type KeyAlgorithm, type TbsSigner } from "../../src/pki/keys.ts";

export const DAY = 24 * 3600 * 1000;

/** A certificate with its key. */
export interface Issued {
  cert: x509.X509Certificate;
  der: Uint8Array;
  key: TbsSigner;
}

export interface MakeOptions {
  subject: string;
  issuer?: Issued;
  alg?: KeyAlgorithm;
  /** The subject's key (any signer: tests bring RSA-PSS); default: a fresh `alg` key. */
  key?: TbsSigner;
  ca?: { pathLength?: number };
  keyUsage?: x509.KeyUsageFlags;
  eku?: string[];
  sans?: string[];
  notBefore?: Date;
  notAfter?: Date;
  extensions?: x509.Extension[];
}

/** Issues a certificate from `issuer` (self-signed without one). */
export async function make(options: MakeOptions): Promise<Issued> {
  const key = options.key ?? await generateKeyPair(options.alg ?? "mldsa65");
  const now = Date.now();
  const cert = await createCertificate({
    subject: options.subject,
    spki: key.spki,
    issuer: options.issuer?.cert,
    signer: options.issuer?.key ?? key,
    notBefore: options.notBefore ?? new Date(now - DAY),
    notAfter: options.notAfter ?? new Date(now + 30 * DAY),
    ca: options.ca,
    keyUsage: options.keyUsage ??
      (options.ca
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
        : x509.KeyUsageFlags.digitalSignature),
    extendedKeyUsage: options.eku,
    subjectAltNames: options.sans?.map(parseSubjectAltName),
    extraExtensions: options.extensions,
  });
  return { cert, der: new Uint8Array(cert.rawData), key };
}

export const SERVER_AUTH = x509.ExtendedKeyUsage.serverAuth;
export const CLIENT_AUTH = x509.ExtendedKeyUsage.clientAuth;

/** A root, a pathLen-0 intermediate and a server leaf for `leaf.example.test`. */
export async function makeChain(alg: KeyAlgorithm = "mldsa65") {
  const root = await make({ subject: "CN=Test Root, O=QSIGN Test", alg, ca: {} });
  const intermediate = await make({
    subject: "CN=Test Intermediate, O=QSIGN Test",
    issuer: root,
    alg,
    ca: { pathLength: 0 },
  });
  const leaf = await make({
    subject: "CN=leaf.example.test",
    issuer: intermediate,
    alg,
    eku: [SERVER_AUTH],
    sans: ["DNS:leaf.example.test", "DNS:*.wild.example.test", "IP:10.1.2.3", "IP:fd00::1"],
  });
  return { root, intermediate, leaf };
}
