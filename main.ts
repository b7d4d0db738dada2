/**
 * qsign: a post-quantum mutual-TLS daemon. Parses the command name and hands the rest of the
 * command line to `src/cli/<command>.ts`.
 */
import "reflect-metadata";
import { getCryptoProvider } from "./src/crypto/index.ts";
import { QsignError, UsageError } from "./src/errors.ts";
import { VERSION } from "./src/version.ts";

type CommandModule = { run(argv: string[]): Promise<number> };

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
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
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "usage: qsign COMMAND [options]   (qsign COMMAND --help for its options)",
    "",
    "commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "  --renewal       same as `qsign renew`",
    "  --version       print the version",
  ].join("\n");
}

/** Runs the CLI and returns its exit status. */
export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    console.log(usage());
    return first === undefined ? 2 : 0;
  }
  if (first === "--version") {
    console.log(`qsign ${VERSION}`);
    return 0;
  }
  const name = first === "--renewal" ? "renew" : first;
  const command = COMMANDS[name];
  try {
    if (!command) throw new UsageError(`unknown command "${first}" (see qsign --help)`);
    // Every command uses the provider: a bad QSIGN_CRYPTO is a configuration error up front, not
    // a confusing failure deep inside key loading or a handshake.
    getCryptoProvider();
    return await (await command.load()).run(rest);
  } catch (e) {
    if (e instanceof QsignError) {
      console.error(`qsign: ${e.message}`);
      return e.exitCode;
    }
    console.error(
      `qsign: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`,
    );
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
