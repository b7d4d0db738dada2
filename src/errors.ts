/**
 * Typed errors shared by every part of qsign. Each carries what an operator needs to fix the
 * problem, and the exit status the CLI uses for it.
 */

/** Base class: anything qsign reports to an operator. */
export class QsignError extends Error {
  constructor(message: string, readonly exitCode = 1, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Wrong command-line use: unknown option, missing value, bad argument. Exit status 2. */
export class UsageError extends QsignError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** Invalid configuration: names the file (when there is one) and the field. Exit status 2. */
export class ConfigError extends QsignError {
  constructor(readonly field: string, problem: string, readonly file?: string) {
    super(`${file ? `${file}: ` : ""}${field}: ${problem}`, 2);
  }
}

/** An input file that cannot be read or parsed: names the file. Exit status 2. */
export class InputError extends QsignError {
  constructor(readonly file: string, problem: string, options?: ErrorOptions) {
    super(`${file}: ${problem}`, 2, options);
  }
}

/** What an operating-system error says, in words, without Deno's "(os error N)" suffix. */
export function osErrorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const words: [new (...args: never[]) => Error, string][] = [
    [Deno.errors.NotFound, "no such file or directory"],
    [Deno.errors.PermissionDenied, "permission denied"],
    [Deno.errors.NotCapable, "not permitted by the runtime's permissions"],
    [Deno.errors.AlreadyExists, "already exists"],
    [Deno.errors.IsADirectory, "is a directory"],
    [Deno.errors.NotADirectory, "not a directory"],
    [Deno.errors.ConnectionRefused, "connection refused"],
    [Deno.errors.ConnectionReset, "connection reset"],
    [Deno.errors.ConnectionAborted, "connection aborted"],
    [Deno.errors.NotConnected, "not connected"],
    [Deno.errors.AddrInUse, "address already in use"],
    [Deno.errors.AddrNotAvailable, "address not available"],
    [Deno.errors.TimedOut, "timed out"],
    [Deno.errors.BrokenPipe, "broken pipe"],
  ];
  const known = words.find(([type]) => e instanceof type);
  if (known) return known[1];
  return e.message.replace(/\s*\(os error \d+\)/, "").split("\n")[0];
}

/**
 * An operating-system error met doing `what` (`reading /etc/qsign/x.pem`, `connecting to
 * 127.0.0.1:1`): one line naming the action and the path or address. Exit status 1.
 */
export class OsError extends QsignError {
  constructor(what: string, cause: unknown) {
    super(`${what}: ${osErrorText(cause)}`, 1, { cause });
  }
}

/** True for the errors Deno raises for a failed system call (file, socket, process). */
export function isOsError(e: unknown): e is Error {
  return e instanceof Error && (
    Object.values(Deno.errors).some((type) => e instanceof type) ||
    /\(os error \d+\)/.test(e.message)
  );
}
