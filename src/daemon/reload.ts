/**
 * Certificate reloads: a new set of materials is loaded completely and checked before it
 * replaces the old one in a single assignment, so handshakes see either the old set or the new
 * one, never a mix; on any error the old set stays. Connections already open are never touched:
 * they keep the keys they were established with.
 */
import { dirname, resolve } from "node:path";
import type { ServiceConfig } from "../config/types.ts";
import { audit } from "../observe/log.ts";
import { metrics } from "../observe/metrics.ts";
import { loadServiceMaterials, type ServiceMaterials, watchedFiles } from "./materials.ts";

/** A service's current materials, replaced whole by `reload()`. */
export class MaterialsHolder {
  #current: ServiceMaterials;

  private constructor(readonly service: ServiceConfig, initial: ServiceMaterials) {
    this.#current = initial;
  }

  /** Loads the service's materials; throws `ConfigError` when they are unusable. */
  static async load(service: ServiceConfig): Promise<MaterialsHolder> {
    return new MaterialsHolder(service, await loadServiceMaterials(service));
  }

  get current(): ServiceMaterials {
    return this.#current;
  }

  /**
   * Loads the files again and swaps them in. Returns false (and logs, and counts) when the new
   * set is unusable; the old one then stays in use.
   */
  async reload(trigger: string): Promise<boolean> {
    try {
      const next = await loadServiceMaterials(this.service);
      this.#current = next;
      metrics.reloads.inc({ result: "ok" });
      audit.info("reload_ok", {
        service: this.service.name,
        trigger,
        certificates: next.summaries.map((c) => ({
          file: c.file,
          subject: c.subject,
          serial: c.serial,
          not_after: c.notAfter,
          fingerprint: c.fingerprint,
        })),
      });
      return true;
    } catch (e) {
      metrics.reloads.inc({ result: "failed" });
      audit.error("reload_failed", {
        service: this.service.name,
        trigger,
        error: e instanceof Error ? e.message : String(e),
        keeping: this.#current.summaries.map((c) => c.fingerprint),
      });
      return false;
    }
  }
}

/** Updates `qtls_cert_expiry_seconds` to exactly the certificates loaded now. */
export function publishCertificateExpiry(holders: readonly MaterialsHolder[]): void {
  metrics.certExpiry.reset();
  for (const holder of holders) {
    for (const c of holder.current.summaries) {
      metrics.certExpiry.set({ cert: c.file }, Math.floor(Date.parse(c.notAfter) / 1000));
    }
  }
}

/**
 * Watches the directories of every certificate, key, CA and CRL file (a file replaced by
 * rename, as atomic writers do, is a new inode, so watching the file itself would go deaf after
 * the first renewal) and calls `onChange` with the services whose files changed, once a burst
 * of events has been quiet for `debounceMs`.
 */
export function watchMaterialFiles(
  services: readonly ServiceConfig[],
  onChange: (changed: ServiceConfig[], paths: string[]) => void,
  debounceMs = 250,
): Disposable {
  const owners = new Map<string, ServiceConfig[]>();
  for (const service of services) {
    for (const file of watchedFiles(service)) {
      const path = resolve(file);
      owners.set(path, [...(owners.get(path) ?? []), service]);
    }
  }
  const directories = [...new Set([...owners.keys()].map((p) => dirname(p)))];
  if (directories.length === 0) return { [Symbol.dispose]() {} };

  const watcher = Deno.watchFs(directories, { recursive: false });
  const pending = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    const paths = [...pending];
    pending.clear();
    const changed = [...new Set(paths.flatMap((p) => owners.get(p) ?? []))];
    if (changed.length) onChange(changed, paths);
  };
  (async () => {
    try {
      for await (const event of watcher) {
        for (const path of event.paths) {
          if (!owners.has(path) || event.kind === "access") continue;
          pending.add(path);
          if (timer !== undefined) clearTimeout(timer);
          timer = setTimeout(flush, debounceMs);
        }
      }
    } catch (e) {
      audit.error("watch_failed", { error: e instanceof Error ? e.message : String(e) });
    }
  })();
  return {
    [Symbol.dispose]() {
      if (timer !== undefined) clearTimeout(timer);
      watcher.close();
    },
  };
}
