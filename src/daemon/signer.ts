/**
 * Where a service's private key comes from: a PKCS#8 file, or a PKCS#11 token when the service
 * has an `hsm` block (for a composite certificate: the token key as the ECDSA-P384 half and an
 * ML-DSA-65 file as the other, see src/hsm/composite.ts). A token is opened once and kept for
 * the life of the process (reloads reuse it: handshakes in flight may still be signing with it),
 * and reports its health to `/readyz` and `qtls_hsm_connected`.
 */
import type { X509Certificate } from "@peculiar/x509";
import type { ServiceConfig } from "../config/types.ts";
import { ConfigError } from "../errors.ts";
import { audit } from "../observe/log.ts";
import { metrics } from "../observe/metrics.ts";
import { noPassphrase, type PassphraseSource, readKeyFile } from "../pki/key_formats.ts";
import { lazySecret } from "../secrets.ts";
import { FileSigner } from "../tls/signers.ts";
import { type KeyKind, keyKind, type SignatureScheme, type Signer } from "../tls/sigschemes.ts";
import type { HsmOptions } from "../hsm/options.ts";
import type { Pkcs11Signer } from "../hsm/signer.ts";

/** Where a service's (or `qsign connect`'s) certificates and keys come from. */
export type KeySource =
  & Pick<ServiceConfig, "cert" | "key" | "origins">
  & Partial<Pick<ServiceConfig, "keyPassphrase">>
  & { hsm?: HsmOptions };

const passphrases = new WeakMap<KeySource, PassphraseSource>();

/**
 * The passphrase of `source`'s encrypted key files and PKCS#12 bundles, looked up when the
 * first one needs it and then kept for the other files of the same load.
 */
export function keyPassphraseOf(source: KeySource): PassphraseSource {
  if (source.keyPassphrase === undefined) {
    return noPassphrase(
      "give its passphrase with key_passphrase (--key-passphrase REF): file:///path, env:NAME, " +
        "credential:NAME or prompt",
    );
  }
  let passphrase = passphrases.get(source);
  if (!passphrase) {
    passphrase = lazySecret(source.keyPassphrase, {
      label: "key passphrase",
      field: source.origins.key_passphrase?.field ?? "key_passphrase",
      warn: (message) => audit.warn("literal_secret", { message }),
    });
    passphrases.set(source, passphrase);
  }
  return passphrase;
}

const COMPOSITE_MLDSA_KEY_FIELD = "hsm.composite_mldsa_key";

/**
 * The signer for the certificate chain at `index` of `source.cert`, whose leaf is `leaf` (its
 * public key tells which key kind to expect). Throws `ConfigError` naming the field, or the
 * HSM's `HsmError`.
 */
export async function resolveSigner(
  source: KeySource,
  index: number,
  leaf: X509Certificate,
): Promise<Signer> {
  const kind = keyKind(leaf);
  const certOrigin = source.origins.cert ?? { field: "cert" };
  if (!kind) {
    throw new ConfigError(
      certOrigin.field,
      `${
        source.cert[index]
      }: the leaf's public key (${leaf.publicKey.algorithm.name}) cannot sign TLS handshakes`,
      certOrigin.file,
    );
  }
  if (source.hsm) return await tokenSigner(source, kind);
  const path = source.key[index];
  const keyOrigin = source.origins.key ?? { field: "key" };
  try {
    const { pkcs8 } = await readKeyFile(path, keyPassphraseOf(source));
    return await FileSigner.fromPkcs8(pkcs8, kind, `file:${path}`);
  } catch (e) {
    const problem = e instanceof Error ? e.message : String(e);
    throw new ConfigError(
      keyOrigin.field,
      problem.startsWith(path) ? problem : `${path}: not a ${kind} PKCS#8 private key (${problem})`,
      keyOrigin.file,
    );
  }
}

/** An open token key, with what closes it. */
interface OpenToken {
  signer: Pkcs11Signer;
  close(): Promise<void>;
}

/** Open tokens by their settings (the composite's ML-DSA half aside: it is read per load). */
const openTokens = new Map<string, Promise<OpenToken>>();

/**
 * The token's signer for a leaf of `kind`: the token key itself, or with `compositeMldsaKey`
 * the composite key whose ECDSA-P384 half it is (its ML-DSA half read again at each load, so a
 * reload picks up a replaced file). Throws `ConfigError` when certificate and settings disagree.
 */
async function tokenSigner(source: KeySource, kind: KeyKind): Promise<Signer> {
  const { compositeMldsaKey, ...token } = source.hsm!;
  const composite = source.origins[COMPOSITE_MLDSA_KEY_FIELD] ??
    { field: `${COMPOSITE_MLDSA_KEY_FIELD} (--hsm-composite-mldsa-key)` };
  if ((kind === "MLDSA65-ECDSA-P384") !== (compositeMldsaKey !== undefined)) {
    throw new ConfigError(
      composite.field,
      compositeMldsaKey === undefined
        ? `${source.cert[0]} is a composite ML-DSA-65 + ECDSA-P384 certificate: give the ` +
          "ML-DSA-65 half, the token key being the ECDSA half"
        : `${source.cert[0]} is not a composite certificate (its key is ${kind})`,
      composite.file,
    );
  }
  const { signer } = await openToken(token, source.origins["hsm.pin"]?.field);
  const counted = countedSigner(signer, token.keyLabel ?? `id:${token.keyId}`);
  if (compositeMldsaKey === undefined) return counted;
  // Loaded on demand: the PKCS#11 addon is needed only when a token is configured.
  const { TokenCompositeKey } = await import("../hsm/composite.ts");
  return (await TokenCompositeKey.open(counted, compositeMldsaKey)).tlsSigner();
}

/** `signer`, counting each signature it makes in `qtls_hsm_signatures_total{key}`. */
function countedSigner<T extends Signer>(signer: T, key: string): T {
  metrics.hsmKeyInUse(key);
  return new Proxy(signer, {
    // The target's own `this`: its methods and getters may use private fields.
    get(target, property) {
      if (property !== "sign") {
        const value = Reflect.get(target, property);
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (scheme: SignatureScheme, message: Uint8Array) => {
        const signature = await target.sign(scheme, message);
        metrics.hsmSigned(key);
        return signature;
      };
    },
  });
}

/** Opens the token key of `settings` once per process and reports its health. */
function openToken(settings: HsmOptions, pinField: string | undefined): Promise<OpenToken> {
  const key = JSON.stringify(settings);
  let opening = openTokens.get(key);
  if (!opening) {
    opening = (async () => {
      const { openHsmSigner } = await import("../hsm/signer.ts");
      const { reportHsmHealth } = await import("../hsm/health.ts");
      const hsm = await openHsmSigner({
        ...settings,
        pinField,
        warn: (message) => audit.warn("literal_secret", { message }),
      });
      const unreport = reportHsmHealth(hsm.pool, `hsm:${hsm.signer.description}`);
      return {
        signer: hsm.signer,
        close: async () => {
          unreport();
          await hsm.close();
        },
      };
    })();
    openTokens.set(key, opening);
    opening.catch(() => openTokens.delete(key));
  }
  return opening;
}

/** Closes every token opened by `resolveSigner` (at shutdown). */
export async function closeTokens(): Promise<void> {
  const tokens = [...openTokens.values()];
  openTokens.clear();
  await Promise.all(tokens.map(async (t) => (await t.catch(() => undefined))?.close()));
}
