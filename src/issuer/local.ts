/** Certificates from the embedded QSIGN CA (`qsign pki init`), the default issuer. */
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import { issueLeaf } from "../pki/ca.ts";
import type { KeyAlgorithm } from "../pki/keys.ts";
import { pemDecodeAll, pemEncodeAll } from "../pki/pem.ts";
import type { IssuedCertificate, Issuer, IssueRequest } from "./issuer.ts";

/** Issues from the Server or Client intermediate CA in `caDir`, by profile. */
export class LocalIssuer implements Issuer {
  readonly kind = "local";

  /** `keyAlgorithm` applies to keys this issuer generates (no CSR); default: the PKI's. */
  constructor(readonly caDir: string, readonly keyAlgorithm?: KeyAlgorithm) {}

  async issue(request: IssueRequest): Promise<IssuedCertificate> {
    const issued = await issueLeaf({
      dir: this.caDir,
      profile: request.profile,
      cn: request.cn,
      sans: request.sans,
      ttlSeconds: request.ttlSeconds,
      alg: this.keyAlgorithm,
      csrDer: request.csrDer,
    });
    // issueLeaf answers the leaf followed by its intermediate.
    const [leaf, ...chain] = pemDecodeAll(issued.certPem, "CERTIFICATE");
    return {
      certPem: pemEncodeAll("CERTIFICATE", [leaf]),
      chainPem: pemEncodeAll("CERTIFICATE", chain),
      keyPem: issued.keyPem,
      serial: issued.serial.toLowerCase(),
      // As the certificate says it (whole seconds), not the time it was asked for.
      notAfter: new X509Certificate(leaf.slice()).notAfter,
    };
  }
}
