/**
 * The daemon's pid file, through which `qsign renew` sends SIGHUP after a renewal.
 *
 * The running daemon holds an exclusive `flock` on the file for its whole life. A pid file left
 * behind by a daemon that was killed is therefore unlocked, and its number (which may belong to
 * any process by now) is never signalled: SIGHUP ends most programs.
 */
import { QsignError } from "../errors.ts";
import { writeFileAtomic } from "../fsutil.ts";

/**
 * Writes this process's pid to `path` (atomically: a reader never sees half a number), locks
 * it, and on dispose removes it and lets the lock go. Refuses, with `QsignError`, a pid file
 * another running daemon holds. Call it only once SIGHUP is handled: its default action ends
 * the process.
 */
export async function writePidFile(path: string): Promise<AsyncDisposable> {
  const running = await runningDaemonPid(path);
  if (running !== undefined) {
    throw new QsignError(
      `pid_file: ${path} belongs to a running daemon (pid ${running}): give each its own`,
      1,
    );
  }
  let file: Deno.FsFile;
  try {
    await writeFileAtomic(path, `${Deno.pid}\n`, { mode: 0o644 });
    // Between the rename and the lock, a renewal finds the file unlocked and relies on the
    // daemon's file watch instead: the watch is running by then.
    file = await Deno.open(path, { read: true });
  } catch (e) {
    const missing = e instanceof Deno.errors.NotFound
      ? ` (its directory does not exist: under systemd, RuntimeDirectory= creates it; elsewhere ` +
        `set pid_file, --pid-file or QSIGN_PID_FILE to a writable path, or remove it)`
      : e instanceof Deno.errors.PermissionDenied
      ? ` (not writable by this user: set pid_file to a path it may write)`
      : "";
    throw new QsignError(
      `pid_file: cannot write ${path}: ${(e as Error).message}${missing}`,
      1,
    );
  }
  await file.lock(true);
  return {
    async [Symbol.asyncDispose]() {
      // Only the file this daemon wrote: an operator may have replaced it meanwhile.
      const [ours, now] = await Promise.all([file.stat(), Deno.stat(path).catch(() => undefined)]);
      if (now?.ino === ours.ino && now?.dev === ours.dev) await Deno.remove(path).catch(() => {});
      file.close();
    },
  };
}

/**
 * The pid of the daemon that holds the pid file `path`, or undefined when none does (no file,
 * or a file left by a daemon that is gone). Throws `QsignError` when the file cannot be read or
 * a locked file does not hold a process id.
 */
export async function runningDaemonPid(path: string): Promise<number | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new QsignError(`cannot read the daemon's pid file ${path}: ${(e as Error).message}`);
  }
  let held: boolean;
  try {
    // A shared lock is granted unless the daemon holds its exclusive one.
    held = !(await file.tryLock(false));
  } finally {
    file.close();
  }
  if (!held) return undefined;
  const text = await Deno.readTextFile(path);
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1) {
    throw new QsignError(`${path}: not a process id: "${text.trim().slice(0, 20)}"`);
  }
  return pid;
}
