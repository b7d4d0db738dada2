/**
 * Secret references: PINs and tokens are named, not given, so they never need to appear in argv
 * (visible to every user through /proc) or in a config file checked into version control.
 *
 * - `file:///path` (or `file:/path`): the file's content, trailing newline removed
 * - `env:NAME`: the environment variable NAME
 * - `credential:NAME`: the systemd credential NAME from `$CREDENTIALS_DIRECTORY`
 * - `prompt`: asked for on the terminal without echo
 * - anything else: taken literally, with a warning that argv is visible to other users
 */
import { ConfigError } from "./errors.ts";

export interface SecretOptions {
  /** What the secret is, for messages and the prompt: "HSM PIN", "Vault token". */
  label: string;
  /** The option or config field it came from, for error messages. */
  field: string;
  /** Called with a warning when a literal secret is used. */
  warn?: (message: string) => void;
}

/** Resolves a secret reference to its value. Throws `ConfigError` naming the field. */
export async function readSecret(ref: string, options: SecretOptions): Promise<string> {
  if (ref.startsWith("file:")) {
    const path = ref.startsWith("file://")
      ? ref.slice("file://".length)
      : ref.slice("file:".length);
    return await readSecretFile(path, options.field);
  }
  if (ref.startsWith("env:")) {
    const name = ref.slice("env:".length);
    const value = Deno.env.get(name);
    if (value === undefined || value === "") {
      throw new ConfigError(options.field, `environment variable ${name} is not set`);
    }
    return value;
  }
  if (ref.startsWith("credential:")) {
    const dir = Deno.env.get("CREDENTIALS_DIRECTORY");
    if (!dir) {
      throw new ConfigError(
        options.field,
        "no systemd credentials ($CREDENTIALS_DIRECTORY is not set)",
      );
    }
    return await readSecretFile(`${dir}/${ref.slice("credential:".length)}`, options.field);
  }
  if (ref === "prompt") return await promptSecret(options);
  options.warn?.(
    `${options.label} given literally in ${options.field}: the command line is visible to every user of this ` +
      `machine; use file:///path, env:NAME, credential:NAME or prompt`,
  );
  return ref;
}

async function readSecretFile(path: string, field: string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).replace(/\r?\n$/, "");
  } catch (e) {
    throw new ConfigError(
      field,
      `cannot read secret file ${path}: ${e instanceof Error ? e.message : e}`,
    );
  }
}

async function promptSecret(options: SecretOptions): Promise<string> {
  if (!Deno.stdin.isTerminal()) {
    throw new ConfigError(
      options.field,
      `cannot prompt for the ${options.label}: standard input is not a terminal`,
    );
  }
  const encoder = new TextEncoder();
  await Deno.stderr.write(encoder.encode(`${options.label}: `));
  Deno.stdin.setRaw(true);
  const chars: number[] = [];
  const buf = new Uint8Array(1);
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null || buf[0] === 0x0d || buf[0] === 0x0a) break;
      if (buf[0] === 0x03) throw new ConfigError(options.field, "interrupted");
      if (buf[0] === 0x7f || buf[0] === 0x08) chars.pop();
      else chars.push(buf[0]);
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(encoder.encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(chars));
}

/**
 * A secret looked up once, when first needed: an unencrypted key never asks for a passphrase,
 * and a `prompt` is shown at most once however many files share it.
 */
export function lazySecret(ref: string, options: SecretOptions): () => Promise<string> {
  let value: Promise<string> | undefined;
  return () => {
    value ??= readSecret(ref, options);
    value.catch(() => value = undefined);
    return value;
  };
}
