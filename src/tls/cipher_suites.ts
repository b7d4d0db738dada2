/** The TLS 1.3 cipher suites qsign speaks (RFC 8446 §B.4). */
import { getCryptoProvider } from "../crypto/index.ts";
import type { AeadName, HashName } from "../crypto/provider.ts";
import { isGrease } from "./codec/constants.ts";

export interface CipherSuite {
  readonly id: number;
  readonly name: string;
  readonly aead: AeadName;
  readonly keyLength: number;
  readonly hash: HashName;
  readonly hashLength: number;
}

/** All suites (the default preference is `defaultSuiteOrder`). */
export const CIPHER_SUITES: readonly CipherSuite[] = [
  {
    id: 0x1302,
    name: "TLS_AES_256_GCM_SHA384",
    aead: "AES-256-GCM",
    keyLength: 32,
    hash: "SHA-384",
    hashLength: 48,
  },
  {
    id: 0x1301,
    name: "TLS_AES_128_GCM_SHA256",
    aead: "AES-128-GCM",
    keyLength: 16,
    hash: "SHA-256",
    hashLength: 32,
  },
  {
    id: 0x1303,
    name: "TLS_CHACHA20_POLY1305_SHA256",
    aead: "ChaCha20-Poly1305",
    keyLength: 32,
    hash: "SHA-256",
    hashLength: 32,
  },
];

export function suiteById(id: number): CipherSuite | undefined {
  return CIPHER_SUITES.find((s) => s.id === id);
}

/** Suites clients offer that qsign does not implement: TLS 1.3 CCM and the signalling values. */
const OTHER_SUITE_NAMES: ReadonlyMap<number, string> = new Map([
  [0x1304, "TLS_AES_128_CCM_SHA256"],
  [0x1305, "TLS_AES_128_CCM_8_SHA256"],
  [0x00ff, "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"],
  [0x5600, "TLS_FALLBACK_SCSV"],
]);

/** A readable name for a suite code point, for logs (TLS 1.2 suites stay in hex). */
export function suiteName(id: number): string {
  return suiteById(id)?.name ?? OTHER_SUITE_NAMES.get(id) ??
    (isGrease(id) ? "grease" : `0x${id.toString(16).padStart(4, "0")}`);
}

/**
 * The default preference: the AEAD this build computes fastest first. Through libcrypto, AES-GCM
 * runs on the processor's AES instructions and leads; in the WebCrypto and JavaScript providers
 * ChaCha20-Poly1305 costs less than half as much per record (docs/crypto.md), so it leads there.
 */
export function defaultSuiteOrder(): CipherSuite[] {
  const chacha = (s: CipherSuite) => s.aead === "ChaCha20-Poly1305";
  const aes = CIPHER_SUITES.filter((s) => !chacha(s));
  const others = CIPHER_SUITES.filter(chacha);
  return getCryptoProvider().primitives["AES-GCM"] === "libcrypto"
    ? [...aes, ...others]
    : [...others, ...aes];
}

/**
 * Resolves configured suite names (IANA `TLS_…` names) to suites, in the given order; the
 * default is every suite, fastest first. Throws RangeError naming an unknown suite.
 */
export function resolveSuites(names?: readonly string[]): CipherSuite[] {
  if (!names?.length) return defaultSuiteOrder();
  return names.map((name) => {
    const suite = CIPHER_SUITES.find((s) => s.name === name);
    if (!suite) {
      throw new RangeError(
        `unknown cipher suite ${name} (known: ${CIPHER_SUITES.map((s) => s.name).join(", ")})`,
      );
    }
    return suite;
  });
}
