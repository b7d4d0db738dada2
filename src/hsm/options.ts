/**
 * The HSM room's door: where a key is and how to reach it, and the defaults, with no PKCS#11
 * code. Configuration and the command line import this; only src/hsm/ loads the native addon.
 */
import { UsageError } from "../errors.ts";

/** Thales Luna's PKCS#11 library, the production default. */
export const LUNA_MODULE_PATH = "/usr/lib/libCryptoki2_64.so";

/** Where the key is and how to reach it; field names match the daemon config's `HsmSettings`. */
export interface HsmOptions {
  /** Path of the PKCS#11 library. */
  module: string;
  /** Token label; exactly one of `token` and `slot`. */
  token?: string;
  slot?: number;
  /** CKA_LABEL of the private key; exactly one of `keyLabel` and `keyId`. */
  keyLabel?: string;
  /** CKA_ID of the private key, hex. */
  keyId?: string;
  /** A secret reference (`file:///path`, `env:NAME`, `credential:NAME`, `prompt`) or, with a warning, the PIN. */
  pin?: string;
  /** Sessions in the pool (default 4). */
  sessions?: number;
  /**
   * ML-DSA-65 PKCS#8 file holding the ML-DSA half of a composite ML-DSA-65 + ECDSA-P384 key
   * whose ECDSA-P384 half is the token key (see src/hsm/composite.ts).
   */
  compositeMldsaKey?: string;
}

/** The default pool size: enough for a few handshakes at once without hogging HSM sessions. */
export const DEFAULT_HSM_SESSIONS = 4;

/** Checks a CKA_ID given in hex (colons allowed, as pkcs11-tool prints them); lowercase result. */
export function parseKeyId(text: string, field: string): string {
  const hex = text.replaceAll(":", "").toLowerCase();
  if (!/^([0-9a-f]{2})+$/.test(hex)) {
    throw new UsageError(`${field} must be hex bytes (e.g. 01a2), got "${text}"`);
  }
  return hex;
}
