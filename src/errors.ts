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
