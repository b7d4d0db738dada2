/**
 * Composite ML-DSA-65 + ECDSA-P384 keys whose ECDSA-P384 half is a token key.
 *
 * The ML-DSA half of a composite signature signs under the composite label as its context.
 * pkcs11js 2.1.7 cannot hand a context to CKM_ML_DSA (see signer.ts), and SoftHSM2 2.6 has no
 * ML-DSA at all, so that half is an ML-DSA-65 PKCS#8 file (mode 0600) beside the token key,
 * signed in process with @noble/post-quantum. The classical half, the one a Luna certified for
 * FIPS 140 protects today, never leaves the token. `qsign hsm keygen --composite-mldsa-key FILE`
 * makes both halves, `qsign hsm csr --composite-mldsa-key FILE` a composite CSR, and
 * `--hsm-composite-mldsa-key FILE` serves or connects with the composite certificate.
 */
import {
  COMPOSITE_MLDSA65_ECDSA_P384_OID,
  compositePublicKeySpki,
  compositeSign,
  mldsa65SeedSigner,
  type MldsaComponentSign,
} from "../crypto/composite.ts";
import { InputError } from "../errors.ts";
import { generateKeyPair, readPrivateKeyFile, writePrivateKeyFile } from "../pki/keys.ts";
import type { TbsSigner } from "../pki/keys.ts";
import { CompositeSigner } from "../tls/signers.ts";
import { HsmError } from "./module.ts";
import type { Pkcs11Signer } from "./signer.ts";

const ECDSA_SECP384R1_SHA384 = 0x0503;

/** The ML-DSA-65 half, loaded from its file. */
interface MlDsaHalf {
  path: string;
  sign: MldsaComponentSign;
  /** The raw ML-DSA-65 public key (1952 bytes). */
  publicKey: Uint8Array;
}

/** Reads the ML-DSA-65 half. Throws `InputError` naming the file. */
async function readMlDsaHalf(path: string): Promise<MlDsaHalf> {
  const key = await readPrivateKeyFile(path);
  if (key.keyAlgorithm !== "mldsa65") {
    throw new InputError(
      path,
      `is a ${key.keyAlgorithm} key; the ML-DSA half of a composite key must be ML-DSA-65`,
    );
  }
  // WebCrypto cannot sign under a context, @noble can, from the seed.
  const seed = new Uint8Array(await crypto.subtle.exportKey("raw-seed", key.privateKey));
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw-public", key.publicKey));
  return { path, sign: mldsa65SeedSigner(seed), publicKey };
}

/**
 * Generates a new ML-DSA-65 half to be written to `path` once the token half exists. Refuses an
 * existing file now, before anything is generated: overwriting the ML-DSA half of a certified
 * key would orphan its certificate.
 */
export async function newMlDsaHalf(path: string): Promise<{ write(): Promise<void> }> {
  const exists = await Deno.lstat(path).then(() => true, (e) => {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  });
  if (exists) throw new InputError(path, "already exists; qsign does not overwrite a key");
  const key = await generateKeyPair("mldsa65");
  return { write: () => writePrivateKeyFile(path, key) };
}

/** A composite key made of an ML-DSA-65 file and an EC P-384 token key. */
export class TokenCompositeKey {
  private constructor(
    readonly token: Pkcs11Signer,
    readonly mldsa: MlDsaHalf,
    /** The composite SubjectPublicKeyInfo (DER) the certificate must carry. */
    readonly spki: Uint8Array,
  ) {}

  /**
   * Pairs the ML-DSA-65 key in `mldsaKeyPath` with the token key behind `token`, which must be
   * EC P-384. Throws `HsmError` for another key type, `InputError` for an unusable file.
   */
  static async open(token: Pkcs11Signer, mldsaKeyPath: string): Promise<TokenCompositeKey> {
    if (token.keyKind !== "ec-p384") {
      throw new HsmError({
        operation: "composite key",
        module: token.module.path,
        problem: `${token.description} is ${token.keyKind}; the token half of a composite ` +
          "ML-DSA-65 + ECDSA-P384 key must be an EC P-384 key",
      });
    }
    const mldsa = await readMlDsaHalf(mldsaKeyPath);
    const ecSpki = await crypto.subtle.importKey(
      "spki",
      new Uint8Array(await token.publicKeySpki()),
      { name: "ECDSA", namedCurve: "P-384" },
      true,
      ["verify"],
    );
    const point = new Uint8Array(await crypto.subtle.exportKey("raw", ecSpki));
    return new TokenCompositeKey(token, mldsa, compositePublicKeySpki(mldsa.publicKey, point));
  }

  /** Operators read this in `/status` and logs: where each half is, never key material. */
  get description(): string {
    return `composite ML-DSA-65 file:${this.mldsa.path} + ECDSA-P384 ${this.token.description}`;
  }

  /** The TLS `Signer` (mldsa65_ecdsa_secp384r1_sha384), its ECDSA half signed in the token. */
  tlsSigner(): CompositeSigner {
    return new CompositeSigner(this.mldsa.sign, this.token, this.description);
  }

  /** Signs X.509 structures (the CSR) with the composite algorithm. */
  tbsSigner(): TbsSigner {
    return {
      algorithm: { name: COMPOSITE_MLDSA65_ECDSA_P384_OID },
      spki: this.spki,
      sign: (tbs) =>
        compositeSign(this.mldsa.sign, (m) => this.token.sign(ECDSA_SECP384R1_SHA384, m), tbs),
    };
  }
}
