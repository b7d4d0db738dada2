/**
 * Every provider the crypto tests run on: the two of vectors.ts plus libcrypto, which must load
 * where the tests run (OpenSSL 3's libcrypto.so.3 comes with the openssl package setup.sh
 * installs); a host without it fails here, loudly, rather than skipping a third of the suite.
 */
import {
  type CryptoProvider,
  libcryptoProvider,
  libcryptoUnavailableReason,
  type PrimitiveFamily,
  type SignatureAlgorithmName,
} from "../../src/crypto/index.ts";
import { PROVIDERS } from "./vectors.ts";

function requireLibcrypto(): CryptoProvider {
  const provider = libcryptoProvider();
  if (!provider) throw new Error(`libcrypto provider unavailable: ${libcryptoUnavailableReason()}`);
  return provider;
}

export const [native, noble] = PROVIDERS;
export const libcrypto = requireLibcrypto();
export const ALL_PROVIDERS: readonly CryptoProvider[] = [native, noble, libcrypto];

/**
 * Ordered pairs of providers whose implementations of `family` differ, one pair per pair of
 * implementations (the same code on both sides would cross-check nothing): native and libcrypto
 * share WebCrypto's ML-KEM and ML-DSA where libcrypto has none, native and noble WebCrypto's RSA.
 */
export function crossPairs(family: PrimitiveFamily): [CryptoProvider, CryptoProvider][] {
  const pairs = new Map<string, [CryptoProvider, CryptoProvider]>();
  for (const a of ALL_PROVIDERS) {
    for (const b of ALL_PROVIDERS) {
      const key = `${a.primitives[family]} ${b.primitives[family]}`;
      if (a.primitives[family] !== b.primitives[family] && !pairs.has(key)) pairs.set(key, [a, b]);
    }
  }
  return [...pairs.values()];
}

/** The primitive family of a signature algorithm. */
export function signatureFamily(name: SignatureAlgorithmName): PrimitiveFamily {
  if (name.startsWith("ML-DSA")) return "ML-DSA";
  if (name.startsWith("ECDSA")) return "ECDSA";
  if (name === "Ed25519") return "Ed25519";
  return "RSA";
}
