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
import { readDerObjects } from "../pki/pem.ts";
import { FileSigner } from "../tls/signers.ts";
import { type KeyKind, keyKind, type Signer } from "../tls/sigschemes.ts";
import type { HsmOptions } from "../hsm/options.ts";

/** Where a service's (or `qsign connect`'s) certificates and keys come from. */
export type KeySource = Pick<ServiceConfig, "cert" | "key" | "origins"> & { hsm?: HsmOptions };

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
    const [pkcs8] = await readDerObjects(path, "PRIVATE KEY");
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

/** Open tokens by their settings, with what closes them. */
const openTokens = new Map<string, Promise<{ signer: Signer; close(): Promise<void> }>>();

/**
 * The token's signer for a leaf of `kind`: the token key itself, or with `compositeMldsaKey`
 * the composite key whose ECDSA-P384 half it is. Throws `ConfigError` when the two disagree.
 */
async function tokenSigner(source: KeySource, kind: KeyKind): Promise<Signer> {
  const settings = source.hsm!;
  const composite = source.origins[COMPOSITE_MLDSA_KEY_FIELD] ??
    { field: `${COMPOSITE_MLDSA_KEY_FIELD} (--hsm-composite-mldsa-key)` };
  if ((kind === "MLDSA65-ECDSA-P384") !== (settings.compositeMldsaKey !== undefined)) {
    throw new ConfigError(
      composite.field,
      settings.compositeMldsaKey === undefined
        ? `${source.cert[0]} is a composite ML-DSA-65 + ECDSA-P384 certificate: give the ` +
          "ML-DSA-65 half, the token key being the ECDSA half"
        : `${source.cert[0]} is not a composite certificate (its key is ${kind})`,
      composite.file,
    );
  }
  const key = JSON.stringify(settings);
  let opening = openTokens.get(key);
  if (!opening) {
    opening = (async () => {
      // Loaded on demand: the PKCS#11 addon is needed only when a token is configured.
      const { openHsmSigner } = await import("../hsm/signer.ts");
      const { reportHsmHealth } = await import("../hsm/health.ts");
      const { TokenCompositeKey } = await import("../hsm/composite.ts");
      const hsm = await openHsmSigner({
        ...settings,
        pinField: source.origins["hsm.pin"]?.field,
        warn: (message) => audit.warn("literal_secret", { message }),
      });
      try {
        const signer = settings.compositeMldsaKey === undefined
          ? hsm.signer
          : (await TokenCompositeKey.open(hsm.signer, settings.compositeMldsaKey)).tlsSigner();
        const unreport = reportHsmHealth(hsm.pool, `hsm:${hsm.signer.description}`);
        return {
          signer,
          close: async () => {
            unreport();
            await hsm.close();
          },
        };
      } catch (e) {
        await hsm.close();
        throw e;
      }
    })();
    openTokens.set(key, opening);
    opening.catch(() => openTokens.delete(key));
  }
  return (await opening).signer;
}

/** Closes every token opened by `resolveSigner` (at shutdown). */
export async function closeTokens(): Promise<void> {
  const tokens = [...openTokens.values()];
  openTokens.clear();
  await Promise.all(tokens.map(async (t) => (await t.catch(() => undefined))?.close()));
}
