/**
 * Certificate requests for keys that already exist: a file key being reused, or a key inside a
 * PKCS#11 token (signed there; it never leaves the token).
 */
import { tokenTbsSigner } from "../hsm/csr.ts";
import type { HsmOptions } from "../hsm/options.ts";
import { openHsmSigner } from "../hsm/signer.ts";
import { createCertificateRequest, parseSubjectAltName } from "../pki/certificate.ts";
import { parsePrivateKey, type TbsSigner } from "../pki/keys.ts";

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
  return await signedRequest(await parsePrivateKey(keyPem, source), subject);
}

/** A DER CSR for a token key, signed inside the token; the session is closed afterwards. */
export async function tokenKeyCsr(
  hsm: HsmOptions & { pinField?: string },
  subject: CsrSubject,
): Promise<Uint8Array> {
  const opened = await openHsmSigner({ ...hsm, sessions: 1 });
  try {
    return await signedRequest(await tokenTbsSigner(opened.signer), subject);
  } finally {
    await opened.close();
  }
}

async function signedRequest(signer: TbsSigner, subject: CsrSubject): Promise<Uint8Array> {
  const csr = await createCertificateRequest({
    subject: `CN=${subject.cn}`,
    signer,
    subjectAltNames: subject.sans.map(parseSubjectAltName),
  });
  return new Uint8Array(csr.rawData);
}
