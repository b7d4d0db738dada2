/** Readable summaries of certificates, CSRs and CRLs, for `qsign pki show`. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { COMPOSITE_MLDSA65_ECDSA_P384_NAME } from "../crypto/composite.ts";
import { toHex } from "../hex.ts";
import { asWebCryptoKeyInfo, bufferSource } from "./der.ts";
import { keyAlgorithmOfSpki } from "./keys.ts";
import { signatureAlgorithmName, verifySignature } from "./signatures.ts";
import { NAME_CONSTRAINTS_OID } from "./names.ts";

const EKU_NAMES: Record<string, string> = {
  "1.3.6.1.5.5.7.3.1": "serverAuth",
  "1.3.6.1.5.5.7.3.2": "clientAuth",
  "1.3.6.1.5.5.7.3.3": "codeSigning",
  "1.3.6.1.5.5.7.3.4": "emailProtection",
  "1.3.6.1.5.5.7.3.8": "timeStamping",
  "1.3.6.1.5.5.7.3.9": "OCSPSigning",
  "2.5.29.37.0": "anyExtendedKeyUsage",
};

/** What a DER object is, judged by which parser accepts it. */
export type PkiObject =
  | { kind: "certificate"; value: x509.X509Certificate }
  | { kind: "certificate request"; value: x509.Pkcs10CertificateRequest }
  | { kind: "CRL"; value: x509.X509Crl };

/** Parses DER as a certificate, else a CSR, else a CRL; undefined when none fits. */
export function parsePkiObject(der: Uint8Array): PkiObject | undefined {
  const bytes = bufferSource(der);
  try {
    return { kind: "certificate", value: new x509.X509Certificate(bytes) };
  } catch { /* not a certificate */ }
  try {
    return { kind: "certificate request", value: new x509.Pkcs10CertificateRequest(bytes) };
  } catch { /* not a CSR */ }
  try {
    const crl = new x509.X509Crl(bytes);
    crl.thisUpdate; // a CertificateList parse is lenient; touching a field proves the shape
    return { kind: "CRL", value: crl };
  } catch { /* not a CRL */ }
  return undefined;
}

/** Lines describing one object (without a heading). */
export async function describe(object: PkiObject): Promise<string[]> {
  switch (object.kind) {
    case "certificate":
      return await describeCertificate(object.value);
    case "certificate request":
      return await describeRequest(object.value);
    case "CRL":
      return await describeCrl(object.value);
  }
}

function field(name: string, value: string): string {
  return `  ${`${name}:`.padEnd(14)}${value}`;
}

async function fingerprint(
  data: x509.X509Certificate | x509.Pkcs10CertificateRequest | x509.X509Crl,
) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data.rawData));
  return toHex(digest).toUpperCase().replace(/(..)(?!$)/g, "$1:");
}

/** The key's algorithm, e.g. `ML-DSA-65`, `ECDSA P-384`, `RSA 3072`, `RSA-PSS 3072`. */
export async function describePublicKey(key: x509.PublicKey): Promise<string> {
  const spki = new Uint8Array(key.rawData);
  const alg = keyAlgorithmOfSpki(spki);
  if (alg === "mldsa65-ecdsa-p384") return `${COMPOSITE_MLDSA65_ECDSA_P384_NAME} (composite)`;
  if (alg?.startsWith("mldsa")) return key.algorithm.name;
  if (alg?.startsWith("ecdsa")) return `ECDSA ${(key.algorithm as EcKeyAlgorithm).namedCurve}`;
  if (alg === "rsa-3072" || alg === "rsa-pss-3072") {
    // Imported only to read the modulus length.
    const imported = await crypto.subtle.importKey(
      "spki",
      bufferSource(asWebCryptoKeyInfo(spki)),
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      true,
      ["verify"],
    );
    const bits = (imported.algorithm as RsaHashedKeyAlgorithm).modulusLength;
    return `${alg === "rsa-pss-3072" ? "RSA-PSS" : "RSA"} ${bits}`;
  }
  return key.algorithm.name;
}

function generalNames(names: readonly x509.GeneralName[]): string {
  const label: Record<string, string> = { dns: "DNS", ip: "IP", url: "URI", email: "EMAIL" };
  return names.map((n) => `${label[n.type] ?? n.type}:${n.value}`).join(", ");
}

function keyUsageNames(flags: number): string {
  return Object.entries(x509.KeyUsageFlags)
    .filter(([name, bit]) => typeof bit === "number" && isNaN(Number(name)) && flags & bit)
    .map(([name]) => name)
    .join(", ");
}

async function describeCertificate(cert: x509.X509Certificate): Promise<string[]> {
  const lines = [
    field("subject", cert.subject),
    field("issuer", cert.issuer),
    field("serial", cert.serialNumber.toLowerCase()),
    field("not before", cert.notBefore.toISOString()),
    field("not after", cert.notAfter.toISOString()),
    field("key", await describePublicKey(cert.publicKey)),
    field("signature", signatureAlgorithmName(cert)),
  ];
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  lines.push(field(
    "CA",
    bc?.ca ? `yes${bc.pathLength !== undefined ? `, path length ${bc.pathLength}` : ""}` : "no",
  ));
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku) lines.push(field("key usage", keyUsageNames(ku.usages)));
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku) {
    lines.push(field("EKU", eku.usages.map((u) => EKU_NAMES[String(u)] ?? String(u)).join(", ")));
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (san) lines.push(field("SANs", generalNames(san.names.items)));
  if (cert.getExtension(NAME_CONSTRAINTS_OID)) lines.push(field("constraints", "name constraints"));
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) lines.push(field("key id", ski.keyId));
  const self = cert.subject === cert.issuer && (await verifySignature(cert, cert.publicKey));
  if (self) lines.push(field("self-signed", "yes"));
  lines.push(field("SHA-256", await fingerprint(cert)));
  return lines;
}

async function describeRequest(csr: x509.Pkcs10CertificateRequest): Promise<string[]> {
  const lines = [
    field("subject", csr.subject || "(empty)"),
    field("key", await describePublicKey(csr.publicKey)),
    field("signature", signatureAlgorithmName(csr)),
    field("signature ok", (await verifySignature(csr, csr.publicKey)) ? "yes" : "NO"),
  ];
  const san = csr.getExtension("2.5.29.17");
  if (san) {
    const names = new x509.SubjectAlternativeNameExtension(san.rawData).names.items;
    lines.push(field("SANs", generalNames(names)));
  }
  lines.push(field("SHA-256", await fingerprint(csr)));
  return lines;
}

async function describeCrl(crl: x509.X509Crl): Promise<string[]> {
  const number = crl.getExtension("2.5.29.20");
  const lines = [
    field("issuer", crl.issuer),
    field("this update", crl.thisUpdate.toISOString()),
    field("next update", crl.nextUpdate?.toISOString() ?? "(none)"),
    field("signature", signatureAlgorithmName(crl)),
  ];
  if (number) {
    lines.push(
      field(
        "CRL number",
        BigInt(`0x${toHex(new Uint8Array(number.value).subarray(2)) || "0"}`).toString(),
      ),
    );
  }
  lines.push(field("revoked", String(crl.entries.length)));
  for (const entry of crl.entries) {
    const reason = entry.reason !== undefined ? ` ${x509.X509CrlReason[entry.reason]}` : "";
    lines.push(
      `    ${entry.serialNumber.toLowerCase()} ${entry.revocationDate.toISOString()}${reason}`,
    );
  }
  lines.push(field("SHA-256", await fingerprint(crl)));
  return lines;
}
