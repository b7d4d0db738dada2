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
import { loadNettle } from "../../src/crypto/nettle.ts";
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
 * libcrypto providers whose P-384 agreement is one the default does not run: OpenSSL's own, which
 * the default leaves to Nettle (native runs WebCrypto's), so every P-384 implementation is tested
 * on every OpenSSL. Nettle must load where the tests run, as libcrypto must: a host without
 * libhogweed fails here.
 */
export const P384_VARIANTS: readonly { provider: CryptoProvider; label: string }[] = (() => {
  if (libcrypto.primitives["ECDH P-384"] !== "nettle") {
    const nettle = loadNettle();
    throw new Error(`Nettle's P-384 unavailable: ${nettle.ok ? "not chosen" : nettle.reason}`);
  }
  return [{ provider: libcryptoWith({ p384: "libcrypto" }), label: "libcrypto (own P-384)" }];
})();

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
  const providers = [
    ...ALL_PROVIDERS,
    ...P384_VARIANTS.map(({ provider }) => provider),
    libcryptoOwnMlDsa,
  ].filter((p) => p !== undefined);
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
