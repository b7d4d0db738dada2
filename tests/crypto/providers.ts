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
import {
  createLibcryptoProvider,
  type LibcryptoProviderOptions,
} from "../../src/crypto/libcrypto.ts";
import { loadLibcrypto } from "../../src/crypto/libcrypto_ffi.ts";
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
 * libcrypto with its own P-384 key agreement even where the provider takes it from native (before
 * OpenSSL 3.2, whose P-384 is slower than Deno's): that code is tested on every OpenSSL all the
 * same. Undefined where libcrypto already runs it.
 */
export const libcryptoOwnP384: CryptoProvider | undefined =
  libcrypto.primitives["ECDH P-384"] === "libcrypto"
    ? undefined
    : libcryptoWith({ p384Agreement: true });

/**
 * libcrypto with its own ML-DSA, which the provider takes from native even where OpenSSL has one
 * (3.5 on; native signs faster): that code is tested all the same. Undefined before OpenSSL 3.5.
 */
export const libcryptoOwnMlDsa: CryptoProvider | undefined = (() => {
  const provider = libcryptoWith({ mlDsa: true });
  return provider.primitives["ML-DSA"] === "libcrypto" ? provider : undefined;
})();

/** A libcrypto provider with `options` (the library already loaded for `libcrypto`). */
function libcryptoWith(options: LibcryptoProviderOptions): CryptoProvider {
  const load = loadLibcrypto();
  if (!load.ok) throw new Error(load.reason);
  return createLibcryptoProvider(load.lib, options);
}

/** The providers whose ML-DSA the tests run: every provider, and libcrypto's own where it has one. */
export const ML_DSA_PROVIDERS: readonly CryptoProvider[] = libcryptoOwnMlDsa
  ? [...ALL_PROVIDERS, libcryptoOwnMlDsa]
  : ALL_PROVIDERS;

/** A provider's name in test names, libcrypto's own ML-DSA told apart from the default. */
export function providerLabel(provider: CryptoProvider): string {
  return provider === libcryptoOwnMlDsa ? "libcrypto (own ML-DSA)" : provider.name;
}

/**
 * Ordered pairs of providers whose implementations of `family` differ, one pair per pair of
 * implementations (the same code on both sides would cross-check nothing): native and libcrypto
 * share WebCrypto's ML-KEM and ML-DSA where libcrypto has none, native and noble WebCrypto's RSA.
 */
export function crossPairs(family: PrimitiveFamily): [CryptoProvider, CryptoProvider][] {
  const pairs = new Map<string, [CryptoProvider, CryptoProvider]>();
  const providers = [...ALL_PROVIDERS, libcryptoOwnP384, libcryptoOwnMlDsa].filter((p) =>
    p !== undefined
  );
  for (const a of providers) {
    for (const b of providers) {
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
