/**
 * `qsign serve`: the Q-TLS daemon. Its options are generated from the settings table of
 * src/config/settings.ts (each is also a `QSIGN_*` variable and a config-file key); this file
 * only parses, loads the configuration and hands it to src/daemon/.
 */
import { type CommandSpec, type OptionSpec, parseCommand } from "./args.ts";
import { loadDaemonConfig } from "../config/load.ts";
import { SETTINGS } from "../config/settings.ts";
import { checkConfiguration, runDaemon } from "../daemon/daemon.ts";
import { runSupervisor } from "../daemon/supervisor.ts";
import { runWorker, workerMarker } from "../daemon/worker.ts";

/** The spelling `qsign hsm keygen|csr|delete` use for the token key, accepted here too. */
const SETTING_ALIASES: Record<string, string[]> = {
  "hsm-key-label": ["key-label"],
  "hsm-key-id": ["key-id"],
};

const SETTING_OPTIONS: Record<string, OptionSpec> = Object.fromEntries(
  SETTINGS.map((s) => {
    const list = s.kind.type === "paths" || s.kind.type === "strings";
    return [
      s.flag,
      {
        type: s.kind.type === "boolean" ? "boolean" : "string",
        help: `${s.help} [${s.env}; ${s.scope === "service" ? "[[service]] " : ""}${s.key}]`,
        value: s.value,
        multiple: list || undefined,
        default: s.default,
        choices: s.kind.type === "choice" ? s.kind.choices : undefined,
        aliases: SETTING_ALIASES[s.flag],
      } satisfies OptionSpec,
    ];
  }),
);

/** The command line of `qsign serve`. */
export const SERVE_COMMAND: CommandSpec = {
  name: "serve",
  summary: "Run the Q-TLS daemon: post-quantum mutual TLS in echo mode (the demo) or proxy mode " +
    "(terminate Q-TLS, forward to --target), with /metrics, /healthz, /readyz and /status. " +
    "Precedence: flags, then QSIGN_* variables, then --config, then defaults. " +
    "SIGHUP reloads certificates; SIGTERM drains and exits. With --workers N (default: one per " +
    "CPU), N processes accept on the same ports under one supervisor (docs/workers.md).",
  options: {
    config: {
      type: "string",
      value: "FILE",
      help:
        "config file, TOML (*.toml) or YAML (*.yaml, *.yml), with [[service]] sections [QSIGN_CONFIG]",
    },
    "check-config": {
      type: "boolean",
      help: "load the configuration and every certificate and key, report, and exit",
    },
    port: { type: "string", value: "PORT", help: "shorthand for --listen 0.0.0.0:PORT" },
    ...SETTING_OPTIONS,
  },
};

/** This command's options, for completion and the man page. */
export const COMMAND_SPECS: CommandSpec[] = [SERVE_COMMAND];

/** Runs `qsign serve`. */
export async function run(argv: string[]): Promise<number> {
  const args = parseCommand(SERVE_COMMAND, argv);
  if (!args) return 0;
  const port = args.integer("port", { min: 0, max: 65535 });
  const flags = port === undefined || args.has("listen")
    ? args
    : withListen(args, `0.0.0.0:${port}`);
  const env = Deno.env.toObject();
  const config = await loadDaemonConfig({ flags, env });
  if (args.boolean("check-config")) {
    const holders = await checkConfiguration(config);
    for (const holder of holders) {
      const s = holder.service;
      console.log(
        `service ${s.name}: ${s.mode} on ${s.listen.hostname}:${s.listen.port}, ` +
          holder.current.summaries.map((c) => `${c.subject} until ${c.notAfter}`).join("; "),
      );
    }
    console.log(`configuration OK${config.file ? `: ${config.file}` : ""}`);
    return 0;
  }
  const worker = workerMarker(env);
  if (worker) return await runWorker(config, worker);
  if (config.workers === 1) return await runDaemon(config);
  return await runSupervisor(config, argv, () => loadDaemonConfig({ flags, env }));
}

/** `--port N` as if `--listen 0.0.0.0:N` had been given. */
function withListen(args: NonNullable<ReturnType<typeof parseCommand>>, listen: string) {
  return {
    has: (name: string) => name === "listen" || args.has(name),
    string: (name: string) => (name === "listen" ? listen : args.string(name)),
    list: (name: string) => args.list(name),
    boolean: (name: string) => args.boolean(name),
  };
}
