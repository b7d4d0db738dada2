/**
 * The PKCS#11 `Signer`: TLS signatures made inside the token, through the session pool.
 *
 * - ECDSA P-256/P-384: the hash is computed here and signed with CKM_ECDSA; the token returns
 *   r || s, which becomes the DER that TLS carries.
 * - RSA-PSS (rsa_pss_rsae_*): the hash is computed here and signed with CKM_RSA_PKCS_PSS,
 *   MGF1 with the same hash and a salt as long as the hash (RFC 8446 §4.2.3).
 * - ML-DSA: CKM_ML_DSA (PKCS#11 3.2, 0x1d) over the whole message, when the module lists it.
 *   pkcs11js 2.1.7 can pass the mechanism number but no CK_SIGN_ADDITIONAL_CONTEXT holding a
 *   context string (the structure contains a pointer it cannot build), so qsign calls CKM_ML_DSA
 *   without a parameter, which PKCS#11 3.2 defines as the empty context with hedging left to the
 *   token: exactly what TLS 1.3 ML-DSA needs. A non-empty context, such as the ML-DSA half of
 *   a composite signature, is refused with an `HsmError` saying so.
 */
import { Buffer } from "node:buffer";
import { ecdsaRawToDer } from "../crypto/der.ts";
import type { SignatureAlgorithmName } from "../crypto/provider.ts";
import { readSecret } from "../secrets.ts";
import {
  schemeInfo,
  schemeName,
  schemesForKey,
  type SignatureScheme,
  type Signer,
} from "../tls/sigschemes.ts";
import { type KeyKind, type KeySelector, type TokenKey, TokenKeys } from "./keys.ts";
import type { Mechanism } from "pkcs11js";
import {
  CKM_ML_DSA,
  HsmError,
  type Pkcs11Binding,
  Pkcs11Module,
  type TokenLocation,
} from "./module.ts";
import { DEFAULT_HSM_SESSIONS, type HsmOptions } from "./options.ts";
import { SessionPool } from "./pool.ts";

/** What the pool prepares on each connection: the key handle and the module's mechanisms. */
export interface SigningKey extends TokenKey {
  mechanisms: Set<number>;
  token: TokenLocation;
}

/** How one signature algorithm runs in the token. */
interface TokenAlgorithm {
  /** Hashed here before the token signs; absent when the token gets the whole message. */
  hash?: PrehashName;
  mechanism: (b: Pkcs11Binding) => Mechanism;
  /** The token's output is r || s and TLS wants DER. */
  ecdsa?: boolean;
}

/** A hash computed here, over the message the token then signs the digest of. */
type PrehashName = "SHA-256" | "SHA-384" | "SHA-512";

/** PKCS#11's digest and MGF1 mechanism per hash, and the salt: as long as the hash. */
const PSS_PARAMETERS = {
  "SHA-256": { hashAlg: "CKM_SHA256", mgf: "CKG_MGF1_SHA256", saltLen: 32 },
  "SHA-384": { hashAlg: "CKM_SHA384", mgf: "CKG_MGF1_SHA384", saltLen: 48 },
  "SHA-512": { hashAlg: "CKM_SHA512", mgf: "CKG_MGF1_SHA512", saltLen: 64 },
} as const satisfies Record<
  PrehashName,
  { hashAlg: keyof Pkcs11Binding; mgf: keyof Pkcs11Binding; saltLen: number }
>;

function pss(hash: PrehashName): TokenAlgorithm {
  const { hashAlg, mgf, saltLen } = PSS_PARAMETERS[hash];
  return {
    hash,
    mechanism: (b) => ({
      mechanism: b.CKM_RSA_PKCS_PSS,
      parameter: { type: b.CK_PARAMS_RSA_PSS, hashAlg: b[hashAlg], mgf: b[mgf], saltLen },
    }),
  };
}

const ML_DSA: TokenAlgorithm = { mechanism: () => ({ mechanism: CKM_ML_DSA }) };

const TOKEN_ALGORITHMS: Partial<Record<SignatureAlgorithmName, TokenAlgorithm>> = {
  "ECDSA-P256-SHA256": {
    hash: "SHA-256",
    mechanism: (b) => ({ mechanism: b.CKM_ECDSA }),
    ecdsa: true,
  },
  "ECDSA-P384-SHA384": {
    hash: "SHA-384",
    mechanism: (b) => ({ mechanism: b.CKM_ECDSA }),
    ecdsa: true,
  },
  "RSA-PSS-SHA256": pss("SHA-256"),
  "RSA-PSS-SHA384": pss("SHA-384"),
  "RSA-PSS-SHA512": pss("SHA-512"),
  "ML-DSA-44": ML_DSA,
  "ML-DSA-65": ML_DSA,
  "ML-DSA-87": ML_DSA,
};

/** The TLS key kind (sigschemes.ts) of a token key kind. */
const TLS_KEY_KIND = {
  "ec-p256": "ECDSA-P256",
  "ec-p384": "ECDSA-P384",
  rsa: "RSA",
  mldsa44: "ML-DSA-44",
  mldsa65: "ML-DSA-65",
  mldsa87: "ML-DSA-87",
} as const satisfies Record<KeyKind, string>;

/** Largest signature of each kind, for the output buffer (RSA: the modulus length). */
function signatureLength(key: TokenKey): number {
  switch (key.kind) {
    case "ec-p256":
      return 64;
    case "ec-p384":
      return 96;
    case "rsa":
      return Math.ceil(key.modulusBits! / 8);
    case "mldsa44":
      return 2420;
    case "mldsa65":
      return 3309;
    case "mldsa87":
      return 4627;
  }
}

const isMlDsa = (kind: KeyKind) => kind.startsWith("mldsa");

/** RFC 7512 percent-encoding for a PKCS#11 URI attribute value. */
const uriValue = (text: string) =>
  [...new TextEncoder().encode(text)].map((byte) =>
    /[A-Za-z0-9\-._~]/.test(String.fromCharCode(byte))
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).padStart(2, "0")}`
  ).join("");

/** A `Signer` whose private key stays in a PKCS#11 token. */
export class Pkcs11Signer implements Signer {
  readonly schemes: readonly SignatureScheme[];
  /** A PKCS#11 URI (RFC 7512) naming token and key, plus the module: no key material. */
  readonly description: string;
  /** The type of the key in the token. */
  readonly keyKind: KeyKind;

  constructor(
    readonly pool: SessionPool<SigningKey>,
    readonly module: Pkcs11Module,
    key: SigningKey,
  ) {
    this.keyKind = key.kind;
    this.schemes = schemesForKey(TLS_KEY_KIND[key.kind]).filter((scheme) =>
      TOKEN_ALGORITHMS[schemeInfo(scheme)!.algorithm!]
    );
    const id = key.id.replace(/(..)/g, "%$1");
    this.description = `pkcs11:token=${uriValue(key.token.label)};object=${uriValue(key.label)}` +
      `${id ? `;id=${id}` : ""};type=private (module ${module.path})`;
  }

  /** Signs in the scheme's TLS wire form (DER for ECDSA). */
  async sign(scheme: SignatureScheme, message: Uint8Array): Promise<Uint8Array> {
    const signature = await this.signRaw(scheme, message);
    return this.#algorithm(scheme).ecdsa ? ecdsaRawToDer(signature) : signature;
  }

  /**
   * Signs in the WebCrypto form (ECDSA as fixed-width r || s), as X.509 tooling expects.
   * Throws `HsmError` when the token fails or the pool is disconnected.
   */
  async signRaw(scheme: SignatureScheme, message: Uint8Array): Promise<Uint8Array> {
    const algorithm = this.#algorithm(scheme);
    const input = algorithm.hash
      ? new Uint8Array(await crypto.subtle.digest(algorithm.hash, new Uint8Array(message)))
      : message;
    return await this.pool.use(async (session, key) => {
      const where = { token: key.token.label, slot: key.token.slot };
      if (isMlDsa(key.kind) && !key.mechanisms.has(CKM_ML_DSA)) throw noMlDsa(this.module, key);
      const b = this.module.binding;
      this.module.call(
        where,
        (api) => api.C_SignInit(session, algorithm.mechanism(b), key.handle),
      );
      const out = Buffer.alloc(signatureLength(key));
      const signature = await this.module.callAsync(
        where,
        (api) => api.C_SignAsync(session, Buffer.from(input), out),
      );
      return new Uint8Array(signature);
    });
  }

  /**
   * ML-DSA with a context string: only the empty context can reach the token through
   * pkcs11js 2.1.7, so anything else is refused rather than signed under the wrong context.
   */
  signMlDsa(message: Uint8Array, context: Uint8Array): Promise<Uint8Array> {
    const scheme = this.schemes.find((s) => schemeInfo(s)?.algorithm?.startsWith("ML-DSA"));
    if (scheme === undefined) {
      return Promise.reject(this.#unsupported("ML-DSA", "the key is not an ML-DSA key"));
    }
    if (context.length > 0) {
      return Promise.reject(this.#unsupported(
        "ML-DSA with a context",
        "pkcs11js 2.1.7 cannot pass CK_SIGN_ADDITIONAL_CONTEXT (it holds a pointer), so only " +
          "the empty context works through PKCS#11; keep the ML-DSA half of a composite key in a file",
      ));
    }
    return this.signRaw(scheme, message);
  }

  /** The key's SubjectPublicKeyInfo (DER), read from the public key object in the token. */
  publicKeySpki(): Promise<Uint8Array> {
    return this.pool.use((session, key) =>
      new TokenKeys(this.module, key.token, session).publicKeySpki(key)
    );
  }

  #algorithm(scheme: SignatureScheme): TokenAlgorithm {
    const algorithm = this.schemes.includes(scheme)
      ? TOKEN_ALGORITHMS[schemeInfo(scheme)!.algorithm!]
      : undefined;
    if (!algorithm) {
      throw this.#unsupported(
        schemeName(scheme),
        `this key signs only ${this.schemes.map(schemeName).join(", ")}`,
      );
    }
    return algorithm;
  }

  #unsupported(what: string, problem: string): HsmError {
    return new HsmError({
      operation: `sign (${what})`,
      module: this.module.path,
      problem: `${this.description}: ${problem}`,
    });
  }
}

function noMlDsa(module: Pkcs11Module, key: SigningKey): HsmError {
  return new HsmError({
    operation: "sign",
    module: module.path,
    token: key.token.label,
    problem: "the module does not list CKM_ML_DSA (0x1d) for this token: ML-DSA signing needs a " +
      "PKCS#11 3.2 module that has it (Luna firmware 7.9 or later; SoftHSM2 2.6 has no ML-DSA)",
  });
}

/** Options of `openHsmSigner` beyond the command line's. */
export interface OpenHsmSignerOptions extends HsmOptions {
  /** Where a literal-PIN warning goes (default: stderr). */
  warn?: (message: string) => void;
  /** The option or config field the PIN came from, for messages (default `--hsm-pin`). */
  pinField?: string;
  reconnectDelayMs?: { initial: number; max: number };
  healthCheckIntervalMs?: number;
}

/** An open HSM key: the signer, its pool (for health reporting), and how to let go of both. */
export interface HsmSigner {
  signer: Pkcs11Signer;
  pool: SessionPool<SigningKey>;
  close(): Promise<void>;
}

/**
 * Reads the PIN, loads the module, opens the session pool on the token and finds the key.
 * Throws `HsmError` (or `ConfigError` for an unreadable PIN reference) when any step fails.
 */
export async function openHsmSigner(options: OpenHsmSignerOptions): Promise<HsmSigner> {
  const selector = keySelector(options);
  const pin = options.pin === undefined ? undefined : await readSecret(options.pin, {
    label: "HSM PIN",
    field: options.pinField ?? "--hsm-pin",
    warn: options.warn ?? ((message) => console.error(`qsign: warning: ${message}`)),
  });
  const module = await Pkcs11Module.open(options.module);
  try {
    const pool = await SessionPool.open<SigningKey>({
      module,
      token: options.token !== undefined ? { label: options.token } : { slot: options.slot! },
      pin,
      size: options.sessions ?? DEFAULT_HSM_SESSIONS,
      reconnectDelayMs: options.reconnectDelayMs,
      healthCheckIntervalMs: options.healthCheckIntervalMs,
      prepare: (session, token) => ({
        ...new TokenKeys(module, token, session).findPrivateKey(selector),
        mechanisms: module.mechanisms(token),
        token,
      }),
    });
    try {
      const key = await pool.use((_session, key) => Promise.resolve(key));
      if (isMlDsa(key.kind) && !key.mechanisms.has(CKM_ML_DSA)) throw noMlDsa(module, key);
      const signer = new Pkcs11Signer(pool, module, key);
      return {
        signer,
        pool,
        close: async () => {
          await pool.close();
          module.release();
        },
      };
    } catch (e) {
      await pool.close();
      throw e;
    }
  } catch (e) {
    module.release();
    throw e;
  }
}

function keySelector(options: HsmOptions): KeySelector {
  if (options.keyId !== undefined) return { id: options.keyId };
  if (options.keyLabel !== undefined) return { label: options.keyLabel };
  throw new HsmError({
    operation: "find key",
    module: options.module,
    problem: "no key selected: give --hsm-key-label or --hsm-key-id",
  });
}
