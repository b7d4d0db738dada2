/**
 * The `--hsm-*` command-line options, shared by `qsign serve`, `qsign connect`, `qsign hsm` and
 * `qsign vault`, and their translation into `HsmOptions`.
 */
import { UsageError } from "../errors.ts";
import {
  DEFAULT_HSM_SESSIONS,
  type HsmOptions,
  LUNA_MODULE_PATH,
  parseKeyId,
} from "../hsm/options.ts";
import type { Args, OptionSpec } from "./args.ts";

/** Token and module options, common to every command that talks to a token. */
export const HSM_TOKEN_OPTIONS: Record<string, OptionSpec> = {
  "hsm-module": {
    type: "string",
    value: "FILE",
    help: "PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)",
    default: LUNA_MODULE_PATH,
  },
  "hsm-token-label": { type: "string", value: "LABEL", help: "token by label (or --hsm-slot)" },
  "hsm-slot": { type: "string", value: "N", help: "token by slot number (or --hsm-token-label)" },
  "hsm-pin": {
    type: "string",
    value: "REF",
    help: "user PIN: file:///path, env:NAME, credential:NAME or prompt (a literal PIN warns)",
  },
};

/**
 * The key of `qsign hsm keygen|csr|delete`: the same spelling in each, and serve's
 * `--hsm-key-label`/`--hsm-key-id` accepted too (as serve accepts `--key-label`).
 */
export const HSM_KEY_OPTIONS: Record<string, OptionSpec> = {
  "key-label": {
    type: "string",
    value: "LABEL",
    help: "the key pair by CKA_LABEL",
    aliases: ["hsm-key-label"],
  },
  "key-id": {
    type: "string",
    value: "HEX",
    help: "the key pair by CKA_ID (hex)",
    aliases: ["hsm-key-id"],
  },
};

/** Every `--hsm-*` option of `qsign serve` and `qsign connect`. */
export const HSM_OPTIONS: Record<string, OptionSpec> = {
  hsm: { type: "boolean", help: "sign with a private key inside a PKCS#11 token (--hsm-*)" },
  ...HSM_TOKEN_OPTIONS,
  "hsm-key-label": {
    type: "string",
    value: "LABEL",
    help: "private key by CKA_LABEL",
    aliases: ["key-label"],
  },
  "hsm-key-id": {
    type: "string",
    value: "HEX",
    help: "private key by CKA_ID (hex)",
    aliases: ["key-id"],
  },
  "hsm-sessions": {
    type: "string",
    value: "N",
    help: "PKCS#11 sessions signing in parallel (Luna ToolkitPoolSize)",
    default: String(DEFAULT_HSM_SESSIONS),
  },
  "hsm-composite-mldsa-key": {
    type: "string",
    value: "FILE",
    help: "ML-DSA-65 half (PKCS#8) of a composite certificate whose ECDSA-P384 half is the " +
      "token key (from qsign hsm keygen --composite-mldsa-key)",
  },
};

/** The module, token and PIN options of `args` (for `qsign hsm`, which has no key options). */
export function hsmTokenFromArgs(
  args: Args,
): Pick<HsmOptions, "module" | "token" | "slot" | "pin"> {
  const token = args.string("hsm-token-label");
  const slot = args.integer("hsm-slot", { min: 0, max: 2 ** 32 - 1 });
  if ((token === undefined) === (slot === undefined)) {
    throw new UsageError(`${args.spec.name}: give exactly one of --hsm-token-label and --hsm-slot`);
  }
  return { module: args.string("hsm-module")!, token, slot, pin: args.string("hsm-pin") };
}

/**
 * `HsmOptions` from the `HSM_OPTIONS` of `args`, or undefined without `--hsm`. Throws
 * `UsageError` for a missing or contradictory selection.
 */
export function hsmOptionsFromArgs(args: Args): HsmOptions | undefined {
  if (!args.boolean("hsm")) return undefined;
  const keyLabel = args.string("hsm-key-label");
  const keyId = args.string("hsm-key-id");
  if ((keyLabel === undefined) === (keyId === undefined)) {
    throw new UsageError(
      `${args.spec.name}: --hsm needs exactly one of --hsm-key-label and --hsm-key-id`,
    );
  }
  return {
    ...hsmTokenFromArgs(args),
    keyLabel,
    keyId: keyId === undefined ? undefined : parseKeyId(keyId, "--hsm-key-id"),
    sessions: args.integer("hsm-sessions", { min: 1, max: 1024 }),
    compositeMldsaKey: args.string("hsm-composite-mldsa-key"),
  };
}
