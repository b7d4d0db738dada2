// Parses certificates with the OpenSSL 3.5 inside Node.js and checks each signature with its
// issuer's public key. Usage: node x509_check.mjs PAIRS_JSON, where PAIRS_JSON is
// [{"cert": FILE, "issuer": FILE}]: the first certificate of each FILE is checked against the
// first certificate of its issuer FILE. Prints one JSON array with a result per pair.
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

const blocks = (file) =>
  readFileSync(file, "utf8").match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ??
    [];

const results = [];
for (const { cert, issuer } of JSON.parse(process.argv[2])) {
  const issuerCert = new X509Certificate(blocks(issuer)[0]);
  {
    const pem = blocks(cert)[0];
    const result = { file: cert };
    try {
      const x = new X509Certificate(pem);
      Object.assign(result, { parsed: true, subject: x.subject, serial: x.serialNumber, ca: x.ca });
      try {
        result.keyType = x.publicKey.asymmetricKeyType;
        result.verified = x.verify(issuerCert.publicKey);
      } catch (error) {
        // OpenSSL 3.5 has no composite ML-DSA: the key (and so the signature) stays opaque.
        result.keyError = error.message;
      }
    } catch (error) {
      Object.assign(result, { parsed: false, error: error.message });
    }
    results.push(result);
  }
}
process.stdout.write(`${JSON.stringify(results)}\n`);
