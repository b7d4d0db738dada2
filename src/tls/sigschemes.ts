/**
 * TLS signature schemes and the `Signer` seam: the engine never touches private key bytes, it
 * asks a Signer (file key, PKCS#11 key, composite of two) to sign.
 */

/** A TLS SignatureScheme code point (RFC 8446 §4.2.3 and the ML-DSA / composite drafts). */
export type SignatureScheme = number;

/** Something that can produce TLS signatures with one private key. */
export interface Signer {
  /** The schemes this key can produce, most preferred first. */
  readonly schemes: readonly SignatureScheme[];
  /** Where the key lives, for logs and errors; never key material (e.g. `file:/etc/qsign/server.key`). */
  readonly description: string;
  /**
   * Signs `message` (the full to-be-signed content, e.g. the CertificateVerify input) with
   * `scheme`, hashing as the scheme requires. The result is in the scheme's wire form.
   */
  sign(scheme: SignatureScheme, message: Uint8Array): Promise<Uint8Array>;
}
