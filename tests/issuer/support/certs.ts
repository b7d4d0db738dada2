/** Small self-signed certificates with their keys, for tests that need matching pairs fast. */
import "reflect-metadata";
import { KeyUsageFlags } from "@peculiar/x509";
import { createCertificate } from "../../../src/pki/certificate.ts";
import { generateKeyPair, privateKeyPem } from "../../../src/pki/keys.ts";

export interface TestPair {
  certPem: string;
  keyPem: string;
  serial: string;
}

/** An ECDSA P-256 key and a self-signed certificate for it, valid from `notBefore` to `notAfter`. */
export async function selfSignedPair(
  cn: string,
  notBefore = new Date(Date.now() - 60_000),
  notAfter = new Date(Date.now() + 24 * 3600_000),
): Promise<TestPair> {
  const key = await generateKeyPair("ecdsa-p256");
  const cert = await createCertificate({
    subject: `CN=${cn}`,
    spki: key.spki,
    signer: key,
    notBefore,
    notAfter,
    keyUsage: KeyUsageFlags.digitalSignature,
  });
  return {
    certPem: cert.toString("pem") + "\n",
    keyPem: privateKeyPem(key),
    serial: cert.serialNumber.toLowerCase(),
  };
}
