/**
 * Certificate reloads: a new set of materials is loaded completely and checked before it
 * replaces the old one in a single assignment, so handshakes see either the old set or the new
 * one, never a mix; on any error the old set stays. Connections already open are never touched:
 * they keep the keys they were established with.
 */
import { dirname, join, resolve } from "node:path";
import type { ServiceConfig } from "../config/types.ts";
import { audit, type LogFields } from "../observe/log.ts";
import { metrics } from "../observe/metrics.ts";
import { loadServiceMaterials, type ServiceMaterials, watchedFiles } from "./materials.ts";

/** A service's current materials, replaced whole by `reload()`. */
export class MaterialsHolder {
  #current: ServiceMaterials;
  /** What each watched file resolved to just before the current set was read. */
  #identities: string;

  private constructor(
    readonly service: ServiceConfig,
    initial: ServiceMaterials,
    identities: string,
  ) {
    this.#current = initial;
    this.#identities = identities;
  }

  /** Loads the service's materials; throws `ConfigError` when they are unusable. */
  static async load(service: ServiceConfig): Promise<MaterialsHolder> {
    const identities = await filesIdentity(service);
    return new MaterialsHolder(service, await loadServiceMaterials(service), identities);
  }

  get current(): ServiceMaterials {
    return this.#current;
  }

  /**
   * Whether a file now resolves to something other than what the current set (or the last
   * attempt to replace it) was read from: a file-change event for files a SIGHUP has already
   * loaded is not a reload.
   */
  async changedSinceLoad(): Promise<boolean> {
    return await filesIdentity(this.service) !== this.#identities;
  }

  /**
   * Loads the files again and swaps them in. On failure (the new set is unusable) the old one
   * stays in use. The caller logs the outcome (`logReload`) and counts the reload: with workers,
   * the supervisor does, once for all of them.
   */
  async reload(trigger: string): Promise<ReloadOutcome> {
    this.#identities = await filesIdentity(this.service);
    try {
      const next = await loadServiceMaterials(this.service);
      this.#current = next;
      return {
        ok: true,
        fields: {
          service: this.service.name,
          trigger,
          certificates: next.summaries.map((c) => ({
            file: c.file,
            subject: c.subject,
            serial: c.serial,
            not_after: c.notAfter,
            fingerprint: c.fingerprint,
          })),
        },
      };
    } catch (e) {
      return {
        ok: false,
        fields: {
          service: this.service.name,
          trigger,
          error: e instanceof Error ? e.message : String(e),
          keeping: this.#current.summaries.map((c) => c.fingerprint),
        },
      };
    }
  }
}

/** What one service's reload did: its `reload_ok` or `reload_failed` log fields. */
export interface ReloadOutcome {
  ok: boolean;
  fields: LogFields & { service: string };
}

/** Logs `outcome` as `reload_ok` (INFO) or `reload_failed` (ERROR), with `extra` fields. */
export function logReload(outcome: ReloadOutcome, extra: LogFields = {}): void {
  if (outcome.ok) audit.info("reload_ok", { ...outcome.fields, ...extra });
  else audit.error("reload_failed", { ...outcome.fields, ...extra });
}

/**
 * Updates `qtls_cert_expiry_seconds` and `qtls_crl_next_update_seconds` to exactly the
 * certificates and CRLs each service has loaded now.
 */
export function publishExpiries(holders: readonly MaterialsHolder[]): void {
  metrics.certExpiry.reset();
  metrics.crlNextUpdate.reset();
  const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);
  for (const holder of holders) {
    const service = holder.service.name;
    for (const c of holder.current.summaries) {
      metrics.certExpiry.set({ service, cert: c.file }, seconds(c.notAfter));
    }
    for (const crl of holder.current.crlSummaries) {
      if (crl.nextUpdate) {
        metrics.crlNextUpdate.set({ service, crl: crl.file }, seconds(crl.nextUpdate));
      }
    }
  }
}

/** What every file of `service` resolves to now, as one comparable string. */
async function filesIdentity(service: ServiceConfig): Promise<string> {
  return (await Promise.all(watchedFiles(service).map(fileIdentity))).join("\n");
}

/**
 * The directory entries a path resolves through: each symbolic link met on the way (replacing
 * one changes what the path means, as the renewal store's rename of `<cert>.live` does) and the
 * entry finally reached. A missing component ends the walk: it is where the file will appear.
 */
export async function resolutionEntries(path: string): Promise<string[]> {
  const entries: string[] = [];
  const pending = resolve(path).split("/").filter(Boolean);
  let current = "/";
  // Bounded as the kernel bounds it (ELOOP after 40 links).
  for (let links = 0; pending.length > 0 && links <= 40;) {
    const next = join(current, pending.shift()!);
    let target: string | undefined;
    try {
      target = (await Deno.lstat(next)).isSymlink ? await Deno.readLink(next) : undefined;
    } catch {
      return [...entries, next];
    }
    if (target === undefined) {
      current = next;
      continue;
    }
    entries.push(next);
    links++;
    pending.unshift(...target.split("/").filter(Boolean));
    if (target.startsWith("/")) current = "/";
  }
  return [...entries, current];
}

/** What a path serves now: the file it reaches, with inode, size and modification time. */
async function fileIdentity(path: string): Promise<string> {
  try {
    const [real, info] = await Promise.all([Deno.realPath(path), Deno.stat(path)]);
    return `${real} ${info.dev}:${info.ino} ${info.size} ${info.mtime?.getTime()}`;
  } catch (e) {
    return `unreadable: ${(e as Error).name}`;
  }
}

interface WatchedFile {
  path: string;
  owners: ServiceConfig[];
  entries: Set<string>;
  identity: string;
}

/**
 * Watches every certificate, key, CA, CRL and ticket-key file of `services` and calls
 * `onChange` with the services whose files now resolve to something else, and those paths, once
 * a burst of events has been quiet for `debounceMs`.
 *
 * A file is watched through the directories of the entries it resolves through (see
 * `resolutionEntries`), never by its own inode: atomic writers replace the file by rename, and
 * the renewal store leaves the configured path alone and swaps the `<cert>.live` link beside it.
 * An event on any of those entries leads to a comparison of what each path resolves to now with
 * what it resolved to before; the watched directories follow the links as they change.
 */
export async function watchMaterialFiles(
  services: readonly ServiceConfig[],
  onChange: (changed: ServiceConfig[], paths: string[]) => void,
  debounceMs = 250,
): Promise<Disposable> {
  const byPath = new Map<string, ServiceConfig[]>();
  for (const service of services) {
    for (const file of watchedFiles(service)) {
      const path = resolve(file);
      byPath.set(path, [...(byPath.get(path) ?? []), service]);
    }
  }
  const files: WatchedFile[] = await Promise.all(
    [...byPath].map(async ([path, owners]) => ({
      path,
      owners,
      entries: new Set(await resolutionEntries(path)),
      identity: await fileIdentity(path),
    })),
  );
  const watch = new DirectoryWatch(files, onChange, debounceMs);
  watch.follow();
  return watch;
}

class DirectoryWatch implements Disposable {
  #watcher?: Deno.FsWatcher;
  #directories = "";
  #timer?: ReturnType<typeof setTimeout>;
  #checks: Promise<void> = Promise.resolve();
  #disposed = false;

  constructor(
    readonly files: WatchedFile[],
    readonly onChange: (changed: ServiceConfig[], paths: string[]) => void,
    readonly debounceMs: number,
  ) {}

  /** (Re)starts the watcher on the directories of every file's entries, if they changed. */
  follow(): void {
    const directories = [
      ...new Set(this.files.flatMap((f) => [...f.entries].map((e) => dirname(e)))),
    ].sort();
    if (this.#disposed || directories.join("\n") === this.#directories) return;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(directories, { recursive: false });
    } catch (e) {
      // A directory vanished between resolving and watching: keep the old watcher; the next
      // event or SIGHUP brings the files in again.
      audit.error("watch_failed", { error: (e as Error).message, directories });
      return;
    }
    this.#watcher?.close();
    this.#watcher = watcher;
    this.#directories = directories.join("\n");
    void this.#listen(watcher);
  }

  async #listen(watcher: Deno.FsWatcher): Promise<void> {
    try {
      for await (const event of watcher) {
        if (event.kind === "access") continue;
        if (!event.paths.some((p) => this.files.some((f) => f.entries.has(p)))) continue;
        if (this.#timer !== undefined) clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.#scheduleCheck(), this.debounceMs);
      }
    } catch (e) {
      if (watcher === this.#watcher) {
        audit.error("watch_failed", { error: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  #scheduleCheck(): void {
    this.#timer = undefined;
    this.#checks = this.#checks.then(() => this.#check());
  }

  /** Compares what each file resolves to with what it did; reports changes; re-follows links. */
  async #check(): Promise<void> {
    const changed: WatchedFile[] = [];
    for (const file of this.files) {
      const identity = await fileIdentity(file.path);
      file.entries = new Set(await resolutionEntries(file.path));
      if (identity === file.identity) continue;
      file.identity = identity;
      changed.push(file);
    }
    if (this.#disposed) return;
    this.follow();
    if (changed.length === 0) return;
    this.onChange(
      [...new Set(changed.flatMap((f) => f.owners))],
      changed.map((f) => f.path),
    );
  }

  [Symbol.dispose](): void {
    this.#disposed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#watcher?.close();
  }
}
