/**
 * qsign: a post-quantum mutual-TLS daemon. Parses the command name and hands the rest of the
 * command line to `src/cli/<command>.ts`.
 */
import "reflect-metadata";
import { getCryptoProvider } from "./src/crypto/index.ts";
import { isOsError, osErrorText, QsignError, UsageError } from "./src/errors.ts";
import { VERSION } from "./src/version.ts";
import { type CommandSpec, parseCommand } from "./src/cli/args.ts";
import { closest } from "./src/suggest.ts";
import type { CatalogEntry } from "./src/cli/completion.ts";

type CommandModule = { run(argv: string[]): Promise<number> | number };
type Command = { summary: string; load: () => Promise<CommandModule> };

const COMMANDS: Record<string, Command> = {
  serve: {
    summary: "run the Q-TLS daemon (echo or proxy mode)",
    load: () => import("./src/cli/serve.ts"),
  },
  connect: {
    summary: "Q-TLS client: interactive, one message, or a local forwarder",
    load: () => import("./src/cli/connect.ts"),
  },
  renew: {
    summary: "renew managed certificates close to expiry (also: qsign --renewal)",
    load: () => import("./src/cli/renew.ts"),
  },
  pki: {
    summary: "the embedded QSIGN PKI: init, issue, revoke, crl, verify, show",
    load: () => import("./src/cli/pki.ts"),
  },
  hsm: {
    summary: "PKCS#11 tokens: slots, keys, keygen, csr",
    load: () => import("./src/cli/hsm.ts"),
  },
  vault: {
    summary: "HashiCorp Vault PKI: issue a certificate",
    load: () => import("./src/cli/vault.ts"),
  },
  bench: {
    summary: "handshake rate, latency and throughput against a TLS 1.3 server",
    load: () => import("./src/cli/bench.ts"),
  },
  completion: {
    summary: "print shell completion: qsign completion bash|zsh",
    load: async () => {
      const { runCompletion } = await import("./src/cli/completion.ts");
      return { run: async (argv) => runCompletion(argv, await catalog()) };
    },
  },
  man: {
    summary: "print the qsign(1) manual page: qsign man | man -l -",
    load: async () => {
      const { runMan } = await import("./src/cli/completion.ts");
      return { run: async (argv) => runMan(argv, await catalog()) };
    },
  },
  version: {
    summary: "print the version (also --version, -V)",
    load: () => Promise.resolve({ run: runVersion }),
  },
};

const VERSION_COMMAND: CommandSpec = {
  name: "version",
  summary: "Print the version.",
  options: {},
};

function runVersion(argv: string[]): number {
  if (!parseCommand(VERSION_COMMAND, argv)) return 0;
  console.log(`qsign ${VERSION}`);
  return 0;
}

/** Every command's option specs, for completion and the man page. */
async function catalog(): Promise<CatalogEntry[]> {
  const { COMPLETION_COMMAND, MAN_COMMAND } = await import("./src/cli/completion.ts");
  const own: Record<string, CommandSpec[]> = {
    completion: [COMPLETION_COMMAND],
    man: [MAN_COMMAND],
    version: [VERSION_COMMAND],
  };
  const entries: CatalogEntry[] = [];
  for (const [name, command] of Object.entries(COMMANDS)) {
    const specs = own[name] ??
      ((await command.load()) as CommandModule & { COMMAND_SPECS: CommandSpec[] }).COMMAND_SPECS;
    entries.push({ name, summary: command.summary, specs });
  }
  return entries;
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "usage: qsign COMMAND [options]   (qsign COMMAND --help for its options)",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "  --renewal       same as `qsign renew`",
    "  --version, -V   print the version",
  ].join("\n");
}

/** Runs the CLI and returns its exit status. */
export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    console.log(usage());
    return first === undefined ? 2 : 0;
  }
  if (first === "--version" || first === "-V") {
    console.log(`qsign ${VERSION}`);
    return 0;
  }
  const name = first === "--renewal" ? "renew" : first;
  const command = COMMANDS[name];
  try {
    if (!command) {
      const guess = closest(first, Object.keys(COMMANDS));
      throw new UsageError(
        `unknown command "${first}"${guess ? ` (did you mean ${guess}?)` : ""} (see qsign --help)`,
      );
    }
    // Every command uses the provider: a bad QSIGN_CRYPTO is a configuration error up front, not
    // a confusing failure deep inside key loading or a handshake.
    getCryptoProvider();
    return await (await command.load()).run(rest);
  } catch (e) {
    return reportError(e);
  }
}

/**
 * One line on stderr for whatever ended a command, and its exit status: the operator's mistakes
 * (QsignError and its kinds, exit 1 or 2) and failed system calls (exit 1) are told in words;
 * only a qsign bug is "internal error", and its stack is printed only with QSIGN_DEBUG=1.
 */
export function reportError(e: unknown): number {
  if (e instanceof QsignError) {
    console.error(`qsign: ${e.message}`);
    return e.exitCode;
  }
  if (isOsError(e)) {
    // Deno says "No such file or directory (os error 2): open '/x'": the call and path first.
    const call = /\(os error \d+\):\s*(.+)$/s.exec(e.message)?.[1].split("\n")[0];
    console.error(`qsign: ${call ? `${call}: ` : ""}${osErrorText(e)}`);
    return 1;
  }
  const debug = Deno.env.get("QSIGN_DEBUG") === "1";
  const text = e instanceof Error ? (debug ? (e.stack ?? e.message) : e.message) : String(e);
  console.error(
    `qsign: internal error: ${text}${debug ? "" : " (QSIGN_DEBUG=1 prints where it happened)"}`,
  );
  return 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
