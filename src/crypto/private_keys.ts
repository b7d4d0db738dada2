/**
 * The private keys one provider hands out: opaque frozen handles, each tied to what stands
 * behind it (secret bytes, a non-extractable CryptoKey) where no caller can reach it.
 */
import type { PrivateKey, SignatureAlgorithmName } from "./provider.ts";

/** The handles one provider made, each with its key material `M`. */
export class PrivateKeys<M> {
  readonly #material = new WeakMap<PrivateKey, M>();

  /** `provider` names the maker in the error for a handle it did not make. */
  constructor(readonly provider: string) {}

  /** A new handle for a key of `algorithm` with public key `publicKeySpki`, backed by `material`. */
  add(algorithm: SignatureAlgorithmName, publicKeySpki: Uint8Array, material: M): PrivateKey {
    const privateKey: PrivateKey = Object.freeze({ algorithm, publicKeySpki });
    this.#material.set(privateKey, material);
    return privateKey;
  }

  /** The material behind `privateKey`. Throws TypeError unless this made it, for `algorithm`. */
  materialOf(privateKey: PrivateKey, algorithm: SignatureAlgorithmName): M {
    const material = this.#material.get(privateKey);
    if (material === undefined || privateKey.algorithm !== algorithm) {
      throw new TypeError(`not a ${algorithm} key of the ${this.provider} provider`);
    }
    return material;
  }
}
