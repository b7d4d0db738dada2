/**
 * Certificate requests for keys that already exist: a file key being reused, or a key inside a
 * PKCS#11 token (signed there; it never leaves the token).
 */
import { createTokenCsr } from "../hsm/csr.ts";
import type { HsmOptions } from "../hsm/options.ts";
import { openHsmSigner } from "../hsm/signer.ts";
import { createCertificateRequest, parseSubjectAltName } from "../pki/certificate.ts";
import { parsePrivateKey } from "../pki/keys.ts";

/** What a request asks for: CN and SANs (`DNS:…`, `IP:…`, `URI:…`, `EMAIL:…`). */
export interface CsrSubject {
  cn: string;
  sans: string[];
}

/** A DER CSR signed by the PKCS#8 key in `keyPem`; `source` names the key in errors. */
export async function fileKeyCsr(
  keyPem: string,
  source: string,
  subject: CsrSubject,
): Promise<Uint8Array> {
  const csr = await createCertificateRequest({
    subject: `CN=${subject.cn}`,
    signer: await parsePrivateKey(keyPem, source),
    subjectAltNames: subject.sans.map(parseSubjectAltName),
  });
  return new Uint8Array(csr.rawData);
}

/** A DER CSR for a token key, signed inside the token; the session is closed afterwards. */
export async function tokenKeyCsr(
  hsm: HsmOptions & { pinField?: string },
  subject: CsrSubject,
): Promise<Uint8Array> {
  const opened = await openHsmSigner({ ...hsm, sessions: 1 });
  try {
    const csr = await createTokenCsr(opened.signer, {
      subject: `CN=${subject.cn}`,
      sans: subject.sans.map(parseSubjectAltName),
    });
    return new Uint8Array(csr.rawData);
  } finally {
    await opened.close();
  }
}
