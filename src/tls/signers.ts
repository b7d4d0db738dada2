/**
 * Signers over keys the process holds: `FileSigner` (a PKCS#8 key imported into the crypto
 * provider) and `CompositeSigner` (ML-DSA-65 + ECDSA-P384, each half from any source, so the
 * ECDSA half may live in an HSM). HSM signers live in src/hsm.
 */
import { getCryptoProvider } from "../crypto/index.ts";
import { asWebCryptoKeyInfo } from "../pki/der.ts";
import type { PrivateKey, SignatureAlgorithmName } from "../crypto/provider.ts";
import {
  compositeSign,
  decodeCompositePrivateKey,
  type EcdsaComponentSign,
  ecdsaP384Signer,
  importEcdsaP384Scalar,
  mldsa65SeedSigner,
  type MldsaComponentSign,
} from "../crypto/composite.ts";
import {
  type KeyKind,
  MLDSA65_ECDSA_P384,
  schemeInfo,
  schemeName,
  schemesForKey,
  type SignatureScheme,
  type Signer,
} from "./sigschemes.ts";

/** Raised when a signer is asked for a scheme its key cannot make. */
export class UnsupportedSchemeError extends Error {
  constructor(signer: string, scheme: SignatureScheme) {
    super(`${signer} cannot sign with ${schemeName(scheme)}`);
    this.name = "UnsupportedSchemeError";
  }
}

/** The key kinds of the PKI's key algorithm names (`src/pki/keys.ts` KeyAlgorithm). */
export const KEY_KIND_OF_ALGORITHM: Record<string, KeyKind> = {
  "mldsa44": "ML-DSA-44",
  "mldsa65": "ML-DSA-65",
  "mldsa87": "ML-DSA-87",
  "ecdsa-p256": "ECDSA-P256",
  "ecdsa-p384": "ECDSA-P384",
  "rsa-2048": "RSA",
  "rsa-3072": "RSA",
  "rsa-4096": "RSA",
  "rsa-pss-3072": "RSA-PSS",
  "ed25519": "Ed25519",
  "mldsa65-ecdsa-p384": "MLDSA65-ECDSA-P384",
};

/** A private key held in process memory, imported into the crypto provider. */
export class FileSigner implements Signer {
  private constructor(
    readonly schemes: readonly SignatureScheme[],
    readonly description: string,
    readonly keys: ReadonlyMap<SignatureAlgorithmName, PrivateKey>,
  ) {}

  /**
   * Imports a PKCS#8 DER key of `kind` (ML-DSA in seed form). `description` names where the key
   * came from, e.g. `file:/etc/qsign/server.key`. A composite key gives a CompositeSigner.
   */
  static async fromPkcs8(pkcs8: Uint8Array, kind: KeyKind, description: string): Promise<Signer> {
    if (kind === "MLDSA65-ECDSA-P384") {
      const parts = decodeCompositePrivateKey(pkcs8);
      const ecdsa = await importEcdsaP384Scalar(parts.ecdsaScalar);
      return new CompositeSigner(
        mldsa65SeedSigner(parts.mldsaSeed),
        ecdsaP384Signer(ecdsa),
        description,
      );
    }
    const schemes = schemesForKey(kind);
    // An id-RSASSA-PSS key is imported in its rsaEncryption form (the provider's only one).
    const importable = kind === "RSA-PSS" ? asWebCryptoKeyInfo(pkcs8) : pkcs8;
    const keys = new Map<SignatureAlgorithmName, PrivateKey>();
    for (const scheme of schemes) {
      const algorithm = schemeInfo(scheme)!.algorithm!;
      if (!keys.has(algorithm)) {
        keys.set(
          algorithm,
          await getCryptoProvider().signature(algorithm).importPrivateKey(importable),
        );
      }
    }
    return new FileSigner(schemes, description, keys);
  }

  sign(scheme: SignatureScheme, message: Uint8Array): Promise<Uint8Array> {
    const algorithm = schemeInfo(scheme)?.algorithm;
    const key = algorithm && this.schemes.includes(scheme) ? this.keys.get(algorithm) : undefined;
    if (!algorithm || !key) throw new UnsupportedSchemeError(this.description, scheme);
    return getCryptoProvider().signature(algorithm).sign(key, message);
  }
}

/**
 * The composite ML-DSA-65 + ECDSA-P384 key. The ML-DSA half signs under the composite label as
 * context (which HSMs and WebCrypto cannot do), so it is a function; the ECDSA half is either a
 * function or any Signer that makes ecdsa_secp384r1_sha384 (an HSM key).
 */
export class CompositeSigner implements Signer {
  readonly schemes = [MLDSA65_ECDSA_P384];
  readonly #ecdsa: EcdsaComponentSign;

  constructor(
    readonly mldsa: MldsaComponentSign,
    ecdsa: EcdsaComponentSign | Signer,
    readonly description: string,
  ) {
    this.#ecdsa = typeof ecdsa === "function" ? ecdsa : (m) => ecdsa.sign(0x0503, m);
  }

  sign(scheme: SignatureScheme, message: Uint8Array): Promise<Uint8Array> {
    if (scheme !== MLDSA65_ECDSA_P384) throw new UnsupportedSchemeError(this.description, scheme);
    return compositeSign(this.mldsa, this.#ecdsa, message);
  }
}
