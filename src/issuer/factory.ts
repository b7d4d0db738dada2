/**
 * Builds what a renewal run needs from its configuration: one issuer per kind (a single Vault
 * client and login for the whole run) and CSRs for keys that already exist. Dispose of it to
 * close the Vault client.
 */
import { InputError } from "../errors.ts";
import { fileKeyCsr, tokenKeyCsr } from "./csr.ts";
import type { ManagedCertificate, RenewalConfig, VaultSettings } from "./config.ts";
import type { Issuer } from "./issuer.ts";
import { LocalIssuer } from "./local.ts";
import type { RenewalContext } from "./renewal.ts";
import { DEFAULT_RETRY, VaultClient, VaultIssuer } from "./vault.ts";

/** The issuer and CSR parts of a `RenewalContext`, with what they hold open. */
export type OpenIssuers = Pick<RenewalContext, "issuer" | "csr"> & AsyncDisposable;

/** Issuers and CSR makers for `config`; `log` receives Vault's informational messages. */
export function openIssuers(config: RenewalConfig, log: (message: string) => void): OpenIssuers {
  let vault: Promise<VaultClient> | undefined;
  return {
    issuer(cert: ManagedCertificate): Promise<Issuer> {
      if (cert.issuer === "local") {
        return Promise.resolve(new LocalIssuer(config.caDir!, cert.keyAlgorithm));
      }
      vault ??= openVaultClient(config.vault!, log);
      return vault.then((client) =>
        new VaultIssuer(client, {
          mount: config.vault!.mount,
          roles: config.vault!.roles,
          keyAlgorithm: cert.keyAlgorithm,
        })
      );
    },
    async csr(cert: ManagedCertificate, keyPem: string | undefined): Promise<Uint8Array> {
      if (cert.keySource.kind !== "hsm") return await fileKeyCsr(keyPem!, cert.paths.key!, cert);
      return await tokenKeyCsr({
        module: config.hsm!.module,
        token: config.hsm!.token,
        pin: config.hsm!.pin,
        pinField: "renewal.hsm.pin",
        keyLabel: cert.keySource.label,
      }, cert);
    },
    async [Symbol.asyncDispose]() {
      if (vault) (await vault.catch(() => undefined))?.close();
    },
  };
}

/** A Vault client for `settings`, reading the CA file for Vault's TLS when one is set. */
export async function openVaultClient(
  settings: VaultSettings,
  log: (message: string) => void,
): Promise<VaultClient> {
  let caCertPem: string | undefined;
  if (settings.caFile !== undefined) {
    try {
      caCertPem = await Deno.readTextFile(settings.caFile);
    } catch (e) {
      throw new InputError(settings.caFile, `cannot read Vault's CA file: ${(e as Error).message}`);
    }
  }
  return new VaultClient({
    address: settings.address,
    auth: settings.auth,
    namespace: settings.namespace,
    caCertPem,
    retry: { ...DEFAULT_RETRY, deadlineMs: settings.timeoutMs },
    log,
  });
}
