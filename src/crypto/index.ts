/**
 * The crypto provider qsign runs on: `QSIGN_CRYPTO=native` (the default: Deno's WebCrypto) or
 * `QSIGN_CRYPTO=noble` (the portable @noble/* implementation). Both are exported for cross-tests.
 */
import { ConfigError } from "../errors.ts";
import { nativeProvider } from "./native.ts";
import { nobleProvider } from "./noble.ts";
import type { CryptoProvider } from "./provider.ts";

export * from "./provider.ts";
export { nativeProvider, nobleProvider };

const PROVIDERS: Record<string, CryptoProvider> = { native: nativeProvider, noble: nobleProvider };

/**
 * The provider `QSIGN_CRYPTO` selects (native when unset or empty). Throws `ConfigError` naming
 * QSIGN_CRYPTO for any other value. Without permission to read the environment, native.
 */
export function getCryptoProvider(): CryptoProvider {
  const choice = readSelection();
  if (!choice) return nativeProvider;
  const provider = Object.hasOwn(PROVIDERS, choice) ? PROVIDERS[choice] : undefined;
  if (!provider) {
    throw new ConfigError("QSIGN_CRYPTO", `unknown crypto provider "${choice}" (native or noble)`);
  }
  return provider;
}

function readSelection(): string | undefined {
  try {
    return Deno.env.get("QSIGN_CRYPTO");
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return undefined;
    throw error;
  }
}
