/**
 * The seam between renewal and where certificates come from: the embedded QSIGN CA
 * (`LocalIssuer`) or HashiCorp Vault's PKI secrets engine (`VaultIssuer`). Renewal, the store and
 * `qsign vault issue` only see this interface.
 */

/** Which intermediate / Vault role a certificate comes from, and its extended key usage. */
export type CertificateProfile = "server" | "client";

/** What to certify. */
export interface IssueRequest {
  profile: CertificateProfile;
  /** Subject common name, e.g. `qtls-server.qsign.local`. */
  cn: string;
  /** Subject alternative names as the PKI writes them: `DNS:…`, `IP:…`, `URI:…`, `EMAIL:…`. */
  sans: string[];
  ttlSeconds: number;
  /**
   * A PKCS#10 request (DER) when the key already exists (HSM key, reused file key); without it
   * the issuer generates the key pair and returns it in `keyPem`.
   */
  csrDer?: Uint8Array;
}

/** A freshly issued certificate. */
export interface IssuedCertificate {
  /** The leaf certificate alone (PEM). */
  certPem: string;
  /** The CA certificates above the leaf, issuing CA first (PEM), as the issuer reports them. */
  chainPem: string;
  /** The new private key (PKCS#8 PEM) when the issuer generated it; absent for a CSR. */
  keyPem?: string;
  /** Serial number as lowercase hex without separators. */
  serial: string;
  notAfter: Date;
}

/** A source of certificates. */
export interface Issuer {
  /** `local` or `vault`: reported in every renewal result line. */
  readonly kind: "local" | "vault";
  issue(request: IssueRequest): Promise<IssuedCertificate>;
}
