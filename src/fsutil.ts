/** File helpers shared by the PKI, the issuers and the daemon. */
import { dirname } from "node:path";

/**
 * Writes `data` to `path` so that readers see either the old file or the whole new one, never a
 * partial write: write a temporary file beside it, fsync it, rename it over the target, then
 * fsync the directory so the rename itself survives a crash.
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options: { mode?: number } = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const mode = options.mode ?? 0o644;
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, createNew: true, mode });
  try {
    // createNew honours the umask; set the mode explicitly so keys are 0600 whatever it is.
    await Deno.chmod(tmp, mode);
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  file.close();
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDirectory(dirname(path));
}

/** Fsyncs a directory so that a rename inside it survives a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic there.
  }
}
