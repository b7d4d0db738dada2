/**
 * A throwaway SoftHSM2 token for one test file: its own token directory and config in a temp
 * dir, selected through SOFTHSM2_CONF (for subprocesses via `env`, for this process via
 * `useInProcess`, which SoftHSM reads when the module is initialised).
 */
import { type KeygenType, TokenKeys } from "../../src/hsm/keys.ts";
import { type Handle, HsmError, Pkcs11Module, SOFTHSM_MODULE_PATH } from "../../src/hsm/module.ts";

export const MODULE = SOFTHSM_MODULE_PATH;
export const PIN = "5678-user";
export const SO_PIN = "1234-so";

export interface TestToken extends AsyncDisposable {
  label: string;
  /** The temp dir holding config and tokens. */
  dir: string;
  /** SoftHSM's token directory, named in the config (move it away to make the token vanish). */
  tokenDir: string;
  /** Environment for subprocesses (`runQsign`, `pkcs11-tool`). */
  env: Record<string, string>;
  /** `--hsm-module … --hsm-token-label …` for `qsign hsm` commands. */
  tokenArgs: string[];
  /** The same plus `--hsm-pin env:QSIGN_TEST_PIN` (the PIN is in `env`). */
  loginArgs: string[];
  /** Points this process's SoftHSM at the token (and sets QSIGN_TEST_PIN) until disposed. */
  useInProcess(): void;
}

/** Creates and initialises a token labelled `label` in a fresh temp dir. */
export async function createTestToken(label = "qsign-test"): Promise<TestToken> {
  const dir = await Deno.makeTempDir({ prefix: "qsign-softhsm-" });
  const tokenDir = `${dir}/tokens`;
  await Deno.mkdir(tokenDir);
  const conf = `${dir}/softhsm2.conf`;
  await Deno.writeTextFile(
    conf,
    `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  const env = { SOFTHSM2_CONF: conf, QSIGN_TEST_PIN: PIN };
  const init = await new Deno.Command("softhsm2-util", {
    args: ["--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!init.success) {
    throw new Error(`softhsm2-util --init-token failed: ${new TextDecoder().decode(init.stderr)}`);
  }
  const previous = Deno.env.get("SOFTHSM2_CONF");
  const tokenArgs = ["--hsm-module", MODULE, "--hsm-token-label", label];
  return {
    label,
    dir,
    tokenDir,
    env,
    tokenArgs,
    loginArgs: [...tokenArgs, "--hsm-pin", "env:QSIGN_TEST_PIN"],
    useInProcess: () => {
      Deno.env.set("SOFTHSM2_CONF", conf);
      Deno.env.set("QSIGN_TEST_PIN", PIN);
    },
    [Symbol.asyncDispose]: async () => {
      if (previous === undefined) Deno.env.delete("SOFTHSM2_CONF");
      else Deno.env.set("SOFTHSM2_CONF", previous);
      Deno.env.delete("QSIGN_TEST_PIN");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs `body` on a logged-in session of the token, from this process. */
async function withSession<T>(
  token: TestToken,
  options: { readWrite: boolean },
  body: (keys: TokenKeys, module: Pkcs11Module, session: Handle) => T,
): Promise<T> {
  token.useInProcess();
  const module = await Pkcs11Module.open(MODULE);
  try {
    const location = module.findToken({ label: token.label });
    const session = module.openSession(location, PIN, options);
    try {
      return body(new TokenKeys(module, location, session), module, session);
    } finally {
      module.closeSession(session);
    }
  } finally {
    module.release();
  }
}

/**
 * Generates key pairs in the token from this process (as `qsign hsm keygen` does), for tests
 * that need keys but are not about the CLI.
 */
export async function generateKeys(
  token: TestToken,
  keys: { type: KeygenType; label: string; id: string }[],
): Promise<void> {
  await withSession(token, { readWrite: true }, (tokenKeys, module) => {
    for (const key of keys) {
      tokenKeys.generate(key.type, key.label, key.id, module.mechanisms(tokenKeys.token));
    }
  });
}

/**
 * Asks the token, logged in, for the CKA_VALUE (the secret) of the private key `label`: the CKR
 * code of the refusal, or undefined if the token handed the key out.
 */
export async function privateValueRefusal(
  token: TestToken,
  label: string,
): Promise<string | undefined> {
  return await withSession(token, { readWrite: false }, (tokenKeys, module, session) => {
    const key = tokenKeys.findPrivateKey({ label });
    try {
      module.call({}, (api) =>
        api.C_GetAttributeValue(session, key.handle, [{
          type: module.binding.CKA_VALUE,
        }]));
      return undefined;
    } catch (e) {
      if (e instanceof HsmError) return e.code;
      throw e;
    }
  });
}

/** A private key as `pkcs11-tool --list-objects` shows it: label, ID and the Access flags. */
export interface Pkcs11ToolPrivateKey {
  label: string;
  id: string;
  access: string[];
}

/** The private keys `pkcs11-tool --login --list-objects` lists in the token, by label. */
export async function pkcs11ToolPrivateKeys(token: TestToken): Promise<Pkcs11ToolPrivateKey[]> {
  const out = await new Deno.Command("pkcs11-tool", {
    args: [
      "--module",
      MODULE,
      "--token-label",
      token.label,
      "--login",
      "--pin",
      PIN,
      "--list-objects",
    ],
    env: token.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`pkcs11-tool failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).split(/\n(?=\S)/)
    .filter((block) => block.startsWith("Private Key Object"))
    .map((block) => ({
      label: /label:\s+(.*)/.exec(block)![1].trim(),
      id: /ID:\s+(.*)/.exec(block)![1].trim(),
      access: /Access:\s+(.*)/.exec(block)![1].trim().split(/,\s*/),
    }))
    .sort((a, b) => a.label.localeCompare(b.label));
}
