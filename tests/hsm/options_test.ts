/**
 * The `--hsm-*` options: the names issue 5 gives them on `qsign serve` and `qsign connect`, and
 * how `qsign connect` parses them.
 */
import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { type CommandSpec, type OptionSpec, parseCommand } from "../../src/cli/args.ts";
import { UsageError } from "../../src/errors.ts";
import { HSM_OPTIONS, hsmOptionsFromArgs } from "../../src/cli/hsm_options.ts";
import { LUNA_MODULE_PATH } from "../../src/hsm/options.ts";
import { SERVE_COMMAND } from "../../src/cli/serve.ts";

const SPEC: CommandSpec = { name: "connect", summary: "test", options: { ...HSM_OPTIONS } };

Deno.test("serve and connect take the --hsm-* options of the production flow", () => {
  const flags = [
    "hsm",
    "hsm-module",
    "hsm-token-label",
    "hsm-slot",
    "hsm-key-label",
    "hsm-key-id",
    "hsm-pin",
    "hsm-sessions",
  ];
  const commands: [string, Record<string, OptionSpec>][] = [
    ["serve", SERVE_COMMAND.options!],
    ["connect", HSM_OPTIONS],
  ];
  for (const [command, options] of commands) {
    deepEqual(flags.filter((flag) => !(flag in options)), [], `${command} lacks these`);
    ok(
      options["hsm-module"].default === LUNA_MODULE_PATH ||
        options["hsm-module"].help.includes(LUNA_MODULE_PATH),
      `${command}: --hsm-module defaults to Luna's ${LUNA_MODULE_PATH}`,
    );
  }
});
const parse = (...argv: string[]) => hsmOptionsFromArgs(parseCommand(SPEC, argv)!);

Deno.test("--hsm options: defaults, selections and mistakes", () => {
  equal(parse("--hsm-token-label", "t"), undefined, "without --hsm the key is not in a token");
  deepEqual(parse("--hsm", "--hsm-token-label", "qsign", "--hsm-key-label", "server"), {
    module: LUNA_MODULE_PATH,
    token: "qsign",
    slot: undefined,
    keyLabel: "server",
    keyId: undefined,
    pin: undefined,
    sessions: 4,
    compositeMldsaKey: undefined,
  });
  deepEqual(
    parse(
      "--hsm",
      "--hsm-module",
      "/usr/lib/softhsm/libsofthsm2.so",
      "--hsm-slot",
      "7",
      "--hsm-key-id",
      "0A:0b",
      "--hsm-pin",
      "env:PIN",
      "--hsm-sessions",
      "16",
      "--hsm-composite-mldsa-key",
      "/etc/qsign/composite-mldsa.key",
    ),
    {
      module: "/usr/lib/softhsm/libsofthsm2.so",
      token: undefined,
      slot: 7,
      keyLabel: undefined,
      keyId: "0a0b",
      pin: "env:PIN",
      sessions: 16,
      compositeMldsaKey: "/etc/qsign/composite-mldsa.key",
    },
  );
  const usage = (argv: string[], text: string) =>
    throws(
      () => parse(...argv),
      (e: unknown) => e instanceof UsageError && e.message.includes(text),
    );
  usage(["--hsm", "--hsm-key-label", "k"], "exactly one of --hsm-token-label and --hsm-slot");
  usage(
    ["--hsm", "--hsm-slot", "1", "--hsm-token-label", "t", "--hsm-key-label", "k"],
    "exactly one",
  );
  usage(["--hsm", "--hsm-slot", "1"], "exactly one of --hsm-key-label and --hsm-key-id");
  usage(["--hsm", "--hsm-slot", "1", "--hsm-key-id", "xyz"], "--hsm-key-id must be hex bytes");
  usage(["--hsm", "--hsm-slot", "1", "--hsm-key-id", "01", "--hsm-sessions", "0"], "between 1 and");
});
