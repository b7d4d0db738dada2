/**
 * Where a managed certificate lives on disk, and how it is replaced without ever serving a
 * certificate that does not match its key.
 *
 * Why not "write both to temp files, then rename key, then cert": the key and the certificate
 * are two files, and no ordering of two renames is atomic. A crash between them leaves a new key
 * beside the old certificate (or the reverse), and a daemon (re)started then cannot serve.
 * One rename must switch every file at once, so the configured paths are symbolic links through
 * a single `live` link, and the renewal replaces only that link:
 *
 * ```
 * /etc/qtls/server.crt              -> server.crt.live/cert.pem
 * /etc/qtls/server.key              -> server.crt.live/key.pem      (relative to its own dir)
 * /etc/qtls/ca-chain.pem            -> server.crt.live/chain.pem    (optional)
 * /etc/qtls/server.crt.live         -> server.crt.versions/20250101T000000Z-0a1b…  (swapped)
 * /etc/qtls/server.crt.versions/<id>/{cert.pem, key.pem (0600), chain.pem}
 * ```
 *
 * A renewal writes a complete new version directory (each file with `writeFileAtomic`: temp,
 * fsync, rename), checks that its certificate matches its key, and only then renames a new
 * `live` link over the old one and fsyncs the directory. A crash before that rename leaves the
 * old version served plus an unreferenced directory (removed by the next run); after it, the new
 * version is complete. Files that are still plain files (first run, or put there by hand) are
 * first copied into a version of their own and relinked one by one: each relink keeps the
 * content it replaces, so every step in between serves matching files too.
 *
 * The `live` link sits beside the certificate, so a daemon watching that directory sees the
 * swap as one rename event; a watch on the certificate path itself would follow the link to a
 * file that never changes.
 */
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import { basename, dirname, join, relative } from "node:path";
import { syncDirectory, writeFileAtomic } from "../fsutil.ts";
import { readPrivateKeyFile } from "../pki/keys.ts";
import { QsignError } from "../errors.ts";

/** The configured paths of one managed certificate; `key` is absent for an HSM key. */
export interface ManagedPaths {
  /** The certificate the daemon serves: leaf first, then intermediates. */
  cert: string;
  key?: string;
  /** The issuer's CA chain (issuing CA first), for trust stores and operators. */
  chain?: string;
}

/** The contents of one version. */
export interface CertificateFiles {
  certPem: string;
  keyPem?: string;
  chainPem?: string;
}

/** A certificate and its key do not belong together. */
export class KeyMismatchError extends QsignError {
  constructor(readonly certFile: string, readonly keyFile: string) {
    super(`${certFile}: the certificate does not match the private key in ${keyFile}`);
  }
}

/**
 * The store's write steps, in order. `QSIGN_TEST_CRASH_AT=<step>` kills the process with
 * SIGKILL right after that step: the crash-safety tests run a renewal once per step and check
 * what is served afterwards. It is read from the environment because the renewal under test
 * runs as a separate process that must die without running any cleanup.
 */
export const STORE_STEPS = [
  "snapshot-written",
  "snapshot-live",
  "relinked-key",
  "relinked-cert",
  "relinked-chain",
  "version-dir",
  "key-written",
  "cert-written",
  "chain-written",
  "live-link-created",
  "live-swapped",
  "pruned",
] as const;
export type StoreStep = (typeof STORE_STEPS)[number];

function step(name: StoreStep): void {
  if (Deno.env.get("QSIGN_TEST_CRASH_AT") === name) Deno.kill(Deno.pid, "SIGKILL");
}

const FILE_NAMES = { cert: "cert.pem", key: "key.pem", chain: "chain.pem" } as const;
type Role = keyof typeof FILE_NAMES;

function liveLink(paths: ManagedPaths): string {
  return `${paths.cert}.live`;
}

function versionsDir(paths: ManagedPaths): string {
  return `${paths.cert}.versions`;
}

function configured(paths: ManagedPaths): [Role, string][] {
  return (["cert", "key", "chain"] as const).flatMap((role) =>
    paths[role] === undefined ? [] : [[role, paths[role]] as [Role, string]]
  );
}

/** What a configured path's link must say: relative, so the tree can be moved or bind-mounted. */
function linkTarget(paths: ManagedPaths, role: Role, path: string): string {
  return join(relative(dirname(path), liveLink(paths)), FILE_NAMES[role]);
}

/**
 * Replaces the managed certificate's files with `files`, atomically as a set (see the module
 * comment); `serial` names the version directory. Throws `KeyMismatchError`, before anything is served, when the new certificate does
 * not match the new key.
 */
export async function storeCertificate(
  paths: ManagedPaths,
  files: CertificateFiles,
  serial: string,
): Promise<void> {
  await Deno.mkdir(versionsDir(paths), { recursive: true });
  using _lock = await lockStore(paths);
  await adoptPlainFiles(paths);
  if (paths.key !== undefined && files.keyPem === undefined) {
    throw new QsignError(`${paths.key}: no private key to store with the new certificate`);
  }
  const previous = await currentVersion(paths);
  const id = await writeVersion(paths, serial, files, step);
  await checkVersion(paths, id);
  await swapLive(paths, id);
  await pruneVersions(paths, [id, previous]);
  step("pruned");
}

/** Serializes renewals of one certificate (a timer run and a manual one). */
async function lockStore(paths: ManagedPaths): Promise<Disposable> {
  const file = await Deno.open(join(versionsDir(paths), ".lock"), {
    write: true,
    create: true,
    mode: 0o600,
  });
  // flock: released by the kernel when the process dies, so a crash never leaves it held.
  await file.lock(true);
  return { [Symbol.dispose]: () => file.close() };
}

/** The version directory `live` points at, or undefined before the first one. */
async function currentVersion(paths: ManagedPaths): Promise<string | undefined> {
  try {
    return basename(await Deno.readLink(liveLink(paths)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Makes every configured path a link through `live`, serving exactly what it served before: the
 * current contents become a version of their own first, then each path is relinked.
 */
async function adoptPlainFiles(paths: ManagedPaths): Promise<void> {
  const unlinked: [Role, string][] = [];
  for (const [role, path] of configured(paths)) {
    if (!(await isLinkTo(path, linkTarget(paths, role, path)))) unlinked.push([role, path]);
  }
  if (unlinked.length === 0) return;
  const snapshot: CertificateFiles = {
    certPem: await readIfExists(paths.cert) ?? "",
    keyPem: paths.key === undefined ? undefined : await readIfExists(paths.key),
    chainPem: paths.chain === undefined ? undefined : await readIfExists(paths.chain),
  };
  if (snapshot.certPem !== "" || snapshot.keyPem !== undefined) {
    const id = await writeVersion(paths, "adopted", snapshot, () => {});
    step("snapshot-written");
    await replaceWithLink(liveLink(paths), join(basename(versionsDir(paths)), id));
    step("snapshot-live");
  }
  // Key before certificate: a daemon starting in between reads both through the same link.
  for (const role of ["key", "cert", "chain"] as const) {
    const path = paths[role];
    if (path === undefined || !unlinked.some(([r]) => r === role)) continue;
    await replaceWithLink(path, linkTarget(paths, role, path));
    step(`relinked-${role}`);
  }
}

/** Writes one complete version directory and fsyncs it; answers its name. */
async function writeVersion(
  paths: ManagedPaths,
  label: string,
  files: CertificateFiles,
  announce: (name: StoreStep) => void,
): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  const id = `${stamp}-${label}-${crypto.randomUUID().slice(0, 8)}`;
  const dir = join(versionsDir(paths), id);
  await Deno.mkdir(dir, { mode: 0o755 });
  announce("version-dir");
  if (paths.key !== undefined && files.keyPem !== undefined) {
    // 0600, or 0640 in a setgid directory: a directory shared with its group (the production
    // layout, docs/production.md, where the renewal runs as the CA's user qtls-ca and the daemon
    // reads the key as group qtls). Others never get the key.
    const shared = ((await Deno.stat(dir)).mode! & 0o2000) !== 0;
    await writeFileAtomic(join(dir, FILE_NAMES.key), files.keyPem, {
      mode: shared ? 0o640 : 0o600,
    });
    announce("key-written");
  }
  await writeFileAtomic(join(dir, FILE_NAMES.cert), files.certPem, { mode: 0o644 });
  announce("cert-written");
  if (paths.chain !== undefined && files.chainPem !== undefined) {
    await writeFileAtomic(join(dir, FILE_NAMES.chain), files.chainPem, { mode: 0o644 });
    announce("chain-written");
  }
  await syncDirectory(versionsDir(paths));
  return id;
}

/** Throws `KeyMismatchError` (and removes the version) when its certificate and key differ. */
async function checkVersion(paths: ManagedPaths, id: string): Promise<void> {
  if (paths.key === undefined) return;
  const dir = join(versionsDir(paths), id);
  const certFile = join(dir, FILE_NAMES.cert);
  const keyFile = join(dir, FILE_NAMES.key);
  if (!(await certMatchesKey(certFile, keyFile))) {
    await Deno.remove(dir, { recursive: true });
    throw new KeyMismatchError(certFile, keyFile);
  }
}

async function swapLive(paths: ManagedPaths, id: string): Promise<void> {
  await replaceWithLink(
    liveLink(paths),
    join(basename(versionsDir(paths)), id),
    "live-link-created",
  );
  step("live-swapped");
}

/** Atomically points `path` at `target`: a new link beside it, renamed over it, dir fsynced. */
async function replaceWithLink(path: string, target: string, created?: StoreStep): Promise<void> {
  const temporary = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.symlink(target, temporary);
  if (created) step(created);
  try {
    await Deno.rename(temporary, path);
  } catch (e) {
    await Deno.remove(temporary).catch(() => {});
    throw e;
  }
  await syncDirectory(dirname(path));
}

/** Removes versions other than `keep` (the live one and its predecessor, for rollback). */
async function pruneVersions(paths: ManagedPaths, keep: (string | undefined)[]): Promise<void> {
  for await (const entry of Deno.readDir(versionsDir(paths))) {
    if (!entry.isDirectory || keep.includes(entry.name)) continue;
    await Deno.remove(join(versionsDir(paths), entry.name), { recursive: true });
  }
  // Links left by a crash between creating a temporary link and renaming it.
  const dir = dirname(paths.cert);
  const prefixes = configured(paths).map(([, p]) => `${basename(p)}.tmp-`)
    .concat(`${basename(liveLink(paths))}.tmp-`);
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isSymlink && prefixes.some((p) => entry.name.startsWith(p))) {
      await Deno.remove(join(dir, entry.name));
    }
  }
}

async function isLinkTo(path: string, target: string): Promise<boolean> {
  try {
    return (await Deno.readLink(path)) === target;
  } catch {
    return false;
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * True when the certificate file's first (leaf) certificate carries the public key of the
 * private key file. Used before a new version goes live, and by tests after a crash.
 */
export async function certMatchesKey(certFile: string, keyFile: string): Promise<boolean> {
  const leaf = new X509Certificate(await Deno.readTextFile(certFile));
  const key = await readPrivateKeyFile(keyFile);
  return equalBytes(new Uint8Array(leaf.publicKey.rawData), key.spki);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
