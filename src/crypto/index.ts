/**
 * The crypto provider qsign runs on, chosen by `QSIGN_CRYPTO`:
 *
 * - `auto` (the default, also when unset or empty): `libcrypto` where the system's OpenSSL 3.x
 *   libcrypto loads, else `native`;
 * - `libcrypto`: the system's OpenSSL over FFI (`QSIGN_LIBCRYPTO` names another file), with
 *   P-384 agreement from GNU Nettle where it loads (nettle.ts); an error where OpenSSL does not;
 * - `native`: Deno's WebCrypto and node:crypto; `noble`: the portable @noble/* implementation.
 *
 * All are exported for cross-tests; `describeCryptoProvider` says which serves what.
 */
import { ConfigError } from "../errors.ts";
import { createLibcryptoProvider } from "./libcrypto.ts";
import { loadLibcrypto } from "./libcrypto_ffi.ts";
import { nativeProvider } from "./native.ts";
import { nobleProvider } from "./noble.ts";
import {
  type CryptoProvider,
  PRIMITIVE_FAMILIES,
  type PrimitiveBackend,
  type PrimitiveFamily,
  type ProviderName,
} from "./provider.ts";

export * from "./provider.ts";
export { LibcryptoError, LibcryptoLengthError } from "./libcrypto_ffi.ts";
export { nativeProvider, nobleProvider };

let libcrypto: { provider?: CryptoProvider; reason?: string } | undefined;

/**
 * The libcrypto provider, made once per isolate, or undefined where libcrypto does not load (no
 * libcrypto.so.3, not OpenSSL 3.x, or no FFI permission); `libcryptoUnavailableReason` says why.
 */
export function libcryptoProvider(): CryptoProvider | undefined {
  return resolveLibcrypto().provider;
}

/** Why `libcryptoProvider()` is undefined, or undefined when it is not. */
export function libcryptoUnavailableReason(): string | undefined {
  return resolveLibcrypto().reason;
}

function resolveLibcrypto(): { provider?: CryptoProvider; reason?: string } {
  if (libcrypto) return libcrypto;
  const load = loadLibcrypto();
  if (!load.ok) return libcrypto = { reason: load.reason };
  try {
    return libcrypto = { provider: createLibcryptoProvider(load.lib) };
  } catch (error) {
    // A library that loads but lacks an algorithm qsign needs (a FIPS-only configuration, say).
    return libcrypto = {
      reason: `${load.lib.path} (${load.lib.version}): ${(error as Error).message}`,
    };
  }
}

const CHOICES = "auto, libcrypto, native or noble";
let chosen: CryptoProvider | undefined;

/**
 * The provider `QSIGN_CRYPTO` selects (see the top of this file). The variable is read once, at
 * the first call: the engine asks for the provider at every key-schedule step, and an
 * environment lookup each time cost more than the HKDF it served. Throws `ConfigError` naming
 * QSIGN_CRYPTO for an unknown value, or for `libcrypto` where it does not load (at every call,
 * until `rereadCryptoSelection`). Without permission to read the environment, `auto`.
 */
export function getCryptoProvider(): CryptoProvider {
  return chosen ??= select(readSelection() || "auto");
}

/** Makes the next `getCryptoProvider()` read QSIGN_CRYPTO again (tests that switch it). */
export function rereadCryptoSelection(): void {
  chosen = undefined;
}

function select(selection: string): CryptoProvider {
  switch (selection) {
    case "auto":
      return libcryptoProvider() ?? nativeProvider;
    case "libcrypto": {
      const provider = libcryptoProvider();
      if (!provider) {
        throw new ConfigError(
          "QSIGN_CRYPTO",
          `the libcrypto provider is unavailable: ${libcryptoUnavailableReason()} ` +
            "(install OpenSSL 3's libcrypto, e.g. the libssl3 package, set QSIGN_LIBCRYPTO to " +
            "its path, or choose QSIGN_CRYPTO=native)",
        );
      }
      return provider;
    }
    case "native":
      return nativeProvider;
    case "noble":
      return nobleProvider;
    default:
      throw new ConfigError("QSIGN_CRYPTO", `unknown crypto provider "${selection}" (${CHOICES})`);
  }
}

function readSelection(): string | undefined {
  try {
    return Deno.env.get("QSIGN_CRYPTO");
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return undefined;
    throw error;
  }
}

/** What the banner, /status and the metrics say about the crypto in use. */
export interface CryptoProviderDescription {
  readonly provider: ProviderName;
  /** The library behind it (e.g. "OpenSSL 3.0.19 27 Jan 2026"), where there is one. */
  readonly library?: string;
  /** What computes each primitive family. */
  readonly primitives: Readonly<Record<PrimitiveFamily, PrimitiveBackend>>;
  /** Under `auto` without libcrypto: why it was not used. */
  readonly libcryptoUnavailable?: string;
}

/**
 * Which provider serves which primitive, for the banner (`formatCryptoProvider`), /status (this
 * object as JSON) and a metric (one `qsign_crypto_primitive_info{primitive,backend}` sample per
 * entry of `primitives`, value 1).
 */
export function describeCryptoProvider(
  provider: CryptoProvider = getCryptoProvider(),
): CryptoProviderDescription {
  const reason = provider.name === "libcrypto" ? undefined : libcryptoUnavailableReason();
  return {
    provider: provider.name,
    ...(provider.library ? { library: provider.library } : {}),
    primitives: Object.fromEntries(
      PRIMITIVE_FAMILIES.map((family) => [family, provider.primitives[family]]),
    ) as Record<PrimitiveFamily, PrimitiveBackend>,
    ...(reason ? { libcryptoUnavailable: reason } : {}),
  };
}

/**
 * One line for a banner: the provider, its library, and the families served by something else,
 * e.g. `libcrypto (OpenSSL 3.0.19 27 Jan 2026); ECDH P-384, ML-KEM, ML-DSA: webcrypto`.
 */
export function formatCryptoProvider(provider: CryptoProvider = getCryptoProvider()): string {
  const { library, primitives } = describeCryptoProvider(provider);
  const byBackend = new Map<PrimitiveBackend, PrimitiveFamily[]>();
  for (const family of PRIMITIVE_FAMILIES) {
    const backend = primitives[family];
    if (backend === provider.name) continue;
    byBackend.set(backend, [...(byBackend.get(backend) ?? []), family]);
  }
  const others = [...byBackend].map(([backend, families]) => `${families.join(", ")}: ${backend}`);
  return [`${provider.name}${library ? ` (${library})` : ""}`, ...others].join("; ");
}
