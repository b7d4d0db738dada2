/**
 * Where a service's private key comes from: a PKCS#8 file, or a PKCS#11 token when the service
 * has an `hsm` block. A token is opened once and kept for the life of the process (reloads reuse
 * it: handshakes in flight may still be signing with it), and reports its health to `/readyz`
 * and `qtls_hsm_connected`.
 */
import type { X509Certificate } from "@peculiar/x509";
import type { HsmSettings, ServiceConfig } from "../config/types.ts";
import { ConfigError } from "../errors.ts";
import { audit } from "../observe/log.ts";
import { readDerObjects } from "../pki/pem.ts";
import { FileSigner } from "../tls/signers.ts";
import { keyKind, type Signer } from "../tls/sigschemes.ts";

/** Where a service's (or `qsign connect`'s) certificates and keys come from. */
export type KeySource = Pick<ServiceConfig, "cert" | "key" | "hsm" | "origins">;

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
  if (source.hsm) return await tokenSigner(source.hsm, source.origins["hsm.pin"]?.field);
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

async function tokenSigner(settings: HsmSettings, pinField = "hsm.pin"): Promise<Signer> {
  const key = JSON.stringify(settings);
  let opening = openTokens.get(key);
  if (!opening) {
    opening = (async () => {
      // Loaded on demand: the PKCS#11 addon is needed only when a token is configured.
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
  return (await opening).signer;
}

/** Closes every token opened by `resolveSigner` (at shutdown). */
export async function closeTokens(): Promise<void> {
  const tokens = [...openTokens.values()];
  openTokens.clear();
  await Promise.all(tokens.map(async (t) => (await t.catch(() => undefined))?.close()));
}
