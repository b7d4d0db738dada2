/**
 * A service's TLS materials: its certificate chains with their signers, the trust anchors and
 * CRLs for client chains. Loaded as one unit and checked before use (every file readable, each
 * key matches its leaf, each leaf currently valid), so a reload either swaps in a complete,
 * working set or changes nothing.
 */
import "reflect-metadata";
import { X509Certificate, X509Crl } from "@peculiar/x509";
import type { Origin, ServiceConfig } from "../config/types.ts";
import { ConfigError, QsignError } from "../errors.ts";
import { CertificateFormatError, CertificateView } from "../pki/certificate_view.ts";
import { readCertificatesFile, readDerObjects } from "../pki/pem.ts";
import type { CertifiedKey } from "../tls/config.ts";
import { schemeName, verifySignature } from "../tls/sigschemes.ts";
import { type TicketIssuer, TicketKeys } from "../tls/tickets.ts";
import { readCertificateChainFile } from "../pki/key_formats.ts";
import { keyPassphraseOf, type KeySource, resolveSigner } from "./signer.ts";

/** What `/status`, the banner and `qtls_cert_expiry_seconds` say about a loaded chain. */
export interface CertificateSummary {
  file: string;
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** SHA-256 of the leaf, hex. */
  fingerprint: string;
  /** The signature schemes its key makes, most preferred first. */
  schemes: string[];
  /** Where the key lives (`file:…`, `pkcs11:…`); never key material. */
  key: string;
}

/** What `/status`, `/readyz` and `qtls_crl_next_update_seconds` say about a loaded CRL. */
export interface CrlSummary {
  file: string;
  issuer: string;
  thisUpdate: string;
  /** Absent when the CRL names no next update (RFC 5280 requires one; some CAs omit it). */
  nextUpdate?: string;
}

/** Everything a service's handshakes need that comes from files. */
export interface ServiceMaterials {
  certificates: CertifiedKey[];
  trustAnchors: Uint8Array[];
  crls: Uint8Array[];
  /** Ticket keys from the service's ticket_key_file; absent without one. */
  tickets?: TicketIssuer;
  summaries: CertificateSummary[];
  crlSummaries: CrlSummary[];
  loadedAt: Date;
}

/**
 * Reads each certificate chain with its key and checks them: readable, leaf currently valid,
 * key matching the leaf. Throws `ConfigError` naming the field and file.
 */
export async function loadCertifiedKeys(
  source: KeySource,
  now = new Date(),
): Promise<{ certificates: CertifiedKey[]; summaries: CertificateSummary[] }> {
  const certificates: CertifiedKey[] = [];
  const summaries: CertificateSummary[] = [];
  for (const [index, path] of source.cert.entries()) {
    const chain = await withField(
      source.origins.cert,
      () => readCertificateChainFile(path, keyPassphraseOf(source)),
    );
    checkReadable(chain, path, source.origins.cert ?? { field: "cert" });
    const leaf = new X509Certificate(chain[0] as Uint8Array<ArrayBuffer>);
    checkValidity(leaf, path, source.origins.cert, now);
    const signer = await resolveSigner(source, index, leaf);
    await checkKeyMatchesLeaf(signer, leaf, path, source.origins.key ?? source.origins.cert);
    certificates.push({ chain, signer });
    summaries.push({
      file: path,
      subject: leaf.subject,
      issuer: leaf.issuer,
      serial: leaf.serialNumber,
      notBefore: leaf.notBefore.toISOString(),
      notAfter: leaf.notAfter.toISOString(),
      fingerprint: hex(new Uint8Array(await leaf.getThumbprint("SHA-256"))),
      schemes: signer.schemes.map(schemeName),
      key: signer.description,
    });
  }
  return { certificates, summaries };
}

/** Reads every certificate, key, CA, CRL and ticket-key file of `service` (see above). */
export async function loadServiceMaterials(
  service: ServiceConfig,
  now = new Date(),
): Promise<ServiceMaterials> {
  const { certificates, summaries } = await loadCertifiedKeys(service, now);
  const { trustAnchors, crls, crlSummaries } = await loadTrust(service);
  const tickets = service.ticketKeyFile === undefined
    ? undefined
    : await withField(service.origins.ticket_key_file, () =>
      TicketKeys.fromFile(service.ticketKeyFile!));
  return { certificates, trustAnchors, crls, tickets, summaries, crlSummaries, loadedAt: now };
}

/** The trust anchors and CRLs of `ca` and `crl` files. Throws `ConfigError`. */
export async function loadTrust(
  source: Pick<ServiceConfig, "ca" | "crl" | "origins">,
): Promise<{ trustAnchors: Uint8Array[]; crls: Uint8Array[]; crlSummaries: CrlSummary[] }> {
  const trustAnchors: Uint8Array[] = [];
  for (const path of source.ca) {
    const anchors = await withField(source.origins.ca, () => readCertificatesFile(path));
    checkReadable(anchors, path, source.origins.ca ?? { field: "ca" });
    trustAnchors.push(...anchors);
  }
  const crls: Uint8Array[] = [];
  const crlSummaries: CrlSummary[] = [];
  for (const path of source.crl) {
    const ders = await withField(source.origins.crl, () => readDerObjects(path, "X509 CRL"));
    for (const der of ders) {
      const crl = parseCrl(source.origins.crl, path, der);
      crlSummaries.push({
        file: path,
        issuer: crl.issuer,
        thisUpdate: crl.thisUpdate.toISOString(),
        nextUpdate: crl.nextUpdate?.toISOString(),
      });
    }
    crls.push(...ders);
  }
  return { trustAnchors, crls, crlSummaries };
}

/** Every file whose change should trigger a reload. */
export function watchedFiles(service: ServiceConfig): string[] {
  return [
    ...service.cert,
    ...service.key,
    ...service.ca,
    ...service.crl,
    ...(service.hsm?.compositeMldsaKey ? [service.hsm.compositeMldsaKey] : []),
    ...(service.ticketKeyFile ? [service.ticketKeyFile] : []),
  ];
}

async function withField<T>(origin: Origin | undefined, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if (!(e instanceof QsignError) || e instanceof ConfigError) throw e;
    throw new ConfigError(origin?.field ?? "file", e.message, origin?.file);
  }
}

function parseCrl(origin: Origin | undefined, path: string, der: Uint8Array): X509Crl {
  try {
    return new X509Crl(der.slice());
  } catch (e) {
    throw new ConfigError(
      origin?.field ?? "crl",
      `${path}: not a CRL: ${(e as Error).message}`,
      origin?.file,
    );
  }
}

/**
 * Reads each certificate as the TLS engine does (CertificateView, strict DER): one it refuses is
 * a configuration error now rather than failed handshakes later.
 */
function checkReadable(ders: readonly Uint8Array[], path: string, origin: Origin): void {
  for (const [i, der] of ders.entries()) {
    try {
      CertificateView.parse(der);
    } catch (e) {
      if (!(e instanceof CertificateFormatError)) throw e;
      throw new ConfigError(
        origin.field,
        `${path}: certificate #${i + 1} is not strict DER X.509 (${e.message})`,
        origin.file,
      );
    }
  }
}

function checkValidity(leaf: X509Certificate, path: string, origin: Origin | undefined, now: Date) {
  const problem = leaf.notAfter < now
    ? `expired on ${leaf.notAfter.toISOString()}`
    : leaf.notBefore > now
    ? `not valid before ${leaf.notBefore.toISOString()}`
    : undefined;
  if (problem) {
    throw new ConfigError(
      origin?.field ?? "cert",
      `${path}: ${leaf.subject} ${problem}`,
      origin?.file,
    );
  }
}

/** Signs a probe with the key and verifies it against the leaf: catches a cert/key mix-up. */
async function checkKeyMatchesLeaf(
  signer: CertifiedKey["signer"],
  leaf: X509Certificate,
  path: string,
  origin: Origin | undefined,
) {
  const scheme = signer.schemes[0];
  const probe = new TextEncoder().encode("qsign: does this key belong to this certificate?");
  const signature = await signer.sign(scheme, probe);
  const spki = new Uint8Array(leaf.publicKey.rawData);
  if (!await verifySignature(scheme, spki, probe, signature)) {
    throw new ConfigError(
      origin?.field ?? "key",
      `${signer.description} does not belong to the certificate in ${path} (${leaf.subject})`,
      origin?.file,
    );
  }
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
