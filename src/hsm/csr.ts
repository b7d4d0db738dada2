/**
 * What `qsign hsm csr` needs beyond the PKI's request builder, which signs with any `TbsSigner`:
 * OpenSSL-style subjects, SAN entries, and a `TbsSigner` that hands the CertificationRequestInfo
 * to the token, so the key never leaves it.
 */
import "reflect-metadata";
import { type JsonGeneralName, type JsonName, Name } from "@peculiar/x509";
import { UsageError } from "../errors.ts";
import { normalizeIp, parseSubjectAltName } from "../pki/certificate.ts";
import type { TbsSigner } from "../pki/keys.ts";
import type { KeyKind } from "./keys.ts";
import type { Pkcs11Signer } from "./signer.ts";

/** How @peculiar/x509 names each key kind's CSR signature (first TLS scheme of the key). */
const CSR_ALGORITHMS: Record<KeyKind, TbsSigner["algorithm"]> = {
  "ec-p256": { name: "ECDSA", hash: "SHA-256", namedCurve: "P-256" },
  "ec-p384": { name: "ECDSA", hash: "SHA-384", namedCurve: "P-384" },
  // rsa_pss_rsae_sha256: PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
  rsa: { name: "RSA-PSS", hash: "SHA-256", saltLength: 32 } as RsaPssParams & { hash: string },
  mldsa44: { name: "ML-DSA-44" },
  mldsa65: { name: "ML-DSA-65" },
  mldsa87: { name: "ML-DSA-87" },
};

/**
 * Parses an OpenSSL-style subject, `/C=KR/O=QSIGN/CN=server.example` (a `\/` is a literal
 * slash), into the distinguished-name text @peculiar/x509 reads, most significant RDN first.
 */
export function parseSubject(subject: string, field = "--subject"): string {
  if (!subject.startsWith("/")) {
    throw new UsageError(`${field} must look like /C=KR/O=QSIGN/CN=name, got "${subject}"`);
  }
  const parts = subject.slice(1).split(/(?<!\\)\//).filter((part) => part !== "");
  if (parts.length === 0) throw new UsageError(`${field} is empty`);
  const rdns: JsonName = parts.map((part) => {
    const eq = part.indexOf("=");
    const type = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).replaceAll("\\/", "/");
    if (eq <= 0 || value === "") {
      throw new UsageError(`${field}: "${part}" is not TYPE=value`);
    }
    return { [type]: [value] };
  });
  return new Name(rdns).toString();
}

/**
 * Reads `--san` entries: `DNS:`, `IP:`, `URI:` or `EMAIL:` prefixed as the PKI takes them, or a
 * bare name, which is an IP address when it parses as one and a DNS name otherwise.
 */
export function parseSans(entries: string[]): JsonGeneralName[] {
  return entries.map((entry) =>
    parseSubjectAltName(
      /^(dns|ip|uri|email):/i.test(entry) ? entry : `${normalizeIp(entry) ? "IP" : "DNS"}:${entry}`,
    )
  );
}

/** The token key behind `signer` as a signer of X.509 to-be-signed bytes. */
export async function tokenTbsSigner(signer: Pkcs11Signer): Promise<TbsSigner> {
  const scheme = signer.schemes[0];
  return {
    algorithm: CSR_ALGORITHMS[signer.keyKind],
    spki: await signer.publicKeySpki(),
    sign: (tbs) => signer.signRaw(scheme, tbs),
  };
}
