/**
 * `qsign hsm slots|keys|keygen|csr`: look into a PKCS#11 token, make a key pair that never
 * leaves it, and get a certificate request for that key signed inside the token.
 */
import { Buffer } from "node:buffer";
import { type Args, type CommandSpec, type OptionSpec, parseCommand } from "./args.ts";
import { dirname } from "node:path";
import { InputError, OsError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../fsutil.ts";
import { readSecret } from "../secrets.ts";
import { newMlDsaHalf, TokenCompositeKey } from "../hsm/composite.ts";
import { parseSans, parseSubject, tokenTbsSigner } from "../hsm/csr.ts";
import { KEYGEN_TYPES, type KeyListing, TokenKeys } from "../hsm/keys.ts";
import { Pkcs11Module } from "../hsm/module.ts";
import { parseKeyId } from "../hsm/options.ts";
import { HSM_KEY_OPTIONS, HSM_TOKEN_OPTIONS, hsmTokenFromArgs } from "./hsm_options.ts";
import { openHsmSigner } from "../hsm/signer.ts";
import { createCertificateRequest } from "../pki/certificate.ts";

const JSON_OPTION: Record<string, OptionSpec> = {
  json: { type: "boolean", help: "print JSON instead of a table" },
};

const SLOTS: CommandSpec = {
  name: "hsm slots",
  summary: "List the PKCS#11 module's slots and their tokens.",
  options: { "hsm-module": HSM_TOKEN_OPTIONS["hsm-module"], ...JSON_OPTION },
};

const KEYS: CommandSpec = {
  name: "hsm keys",
  summary: "List the key objects in a token with the attributes that keep them inside it " +
    "(without --hsm-pin only public objects are visible).",
  options: { ...HSM_TOKEN_OPTIONS, ...JSON_OPTION },
};

const KEYGEN: CommandSpec = {
  name: "hsm keygen",
  summary: "Generate a key pair inside the token: a private, sensitive, non-extractable token " +
    "object that never leaves it.",
  options: {
    ...HSM_TOKEN_OPTIONS,
    type: {
      type: "string",
      value: KEYGEN_TYPES.join("|"),
      help: "key type",
      default: "ec-p384",
      choices: KEYGEN_TYPES,
    },
    "key-label": {
      ...HSM_KEY_OPTIONS["key-label"],
      help: "CKA_LABEL of both halves (required)",
      aliases: ["label", "hsm-key-label"],
    },
    "key-id": {
      ...HSM_KEY_OPTIONS["key-id"],
      help: "CKA_ID of both halves (default: 8 random bytes)",
      aliases: ["id", "hsm-key-id"],
    },
    "composite-mldsa-key": {
      type: "string",
      value: "FILE",
      help: "with --type ec-p384: also write a new ML-DSA-65 key (PKCS#8, 0600) to FILE, the " +
        "ML-DSA half of a composite ML-DSA-65 + ECDSA-P384 key whose ECDSA half is this token key",
    },
  },
};

const CSR: CommandSpec = {
  name: "hsm csr",
  summary: "Write a PKCS#10 certificate request for a token key, signed inside the token " +
    "(for qsign pki issue --csr or Vault's sign endpoint).",
  options: {
    ...HSM_TOKEN_OPTIONS,
    ...HSM_KEY_OPTIONS,
    subject: {
      type: "string",
      value: "DN",
      help: "subject, e.g. /C=KR/O=QSIGN/CN=server (required)",
    },
    san: {
      type: "string",
      value: "NAME",
      multiple: true,
      help: "subjectAltName: DNS:name, IP:addr, URI:uri, email:addr (a bare name is DNS or IP)",
    },
    out: { type: "string", value: "FILE", help: "where to write the PEM request (required)" },
    "composite-mldsa-key": {
      type: "string",
      value: "FILE",
      help: "request a composite ML-DSA-65 + ECDSA-P384 certificate: FILE is the ML-DSA half, " +
        "the token key (EC P-384) the ECDSA half",
    },
  },
};

const DELETE: CommandSpec = {
  name: "hsm delete",
  summary: "Destroy a key pair in the token (its private and public key objects), selected by " +
    "label or CKA_ID. There is no undo: certificates for that key stop working.",
  options: { ...HSM_TOKEN_OPTIONS, ...HSM_KEY_OPTIONS },
};

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  slots: (argv) => withArgs(SLOTS, argv, slots),
  keys: (argv) => withArgs(KEYS, argv, keys),
  keygen: (argv) => withArgs(KEYGEN, argv, keygen),
  csr: (argv) => withArgs(CSR, argv, csr),
  delete: (argv) => withArgs(DELETE, argv, deletePair),
};

/** Every `qsign hsm` subcommand's options, for completion and the man page. */
export const COMMAND_SPECS: CommandSpec[] = [SLOTS, KEYS, KEYGEN, CSR, DELETE];

/** Runs `qsign hsm SUBCOMMAND …`. */
export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h") {
    console.log([
      "usage: qsign hsm slots|keys|keygen|csr|delete [options]   (qsign hsm SUBCOMMAND --help)",
      "",
      "  slots    list slots and tokens",
      "  keys     list key objects and their protection attributes",
      "  keygen   generate a key pair inside the token",
      "  csr      write a certificate request signed inside the token",
      "  delete   destroy a key pair in the token",
    ].join("\n"));
    return name === undefined ? 2 : 0;
  }
  const subcommand = SUBCOMMANDS[name];
  if (!subcommand) throw new UsageError(`hsm: unknown subcommand "${name}" (see qsign hsm --help)`);
  return await subcommand(rest);
}

async function withArgs(
  spec: CommandSpec,
  argv: string[],
  body: (args: Args) => Promise<void>,
): Promise<number> {
  const args = parseCommand(spec, argv);
  if (!args) return 0;
  await body(args);
  return 0;
}

const warn = (message: string) => console.error(`qsign: warning: ${message}`);

/** Loads the module for the duration of `body`. */
async function withModule<T>(path: string, body: (module: Pkcs11Module) => T | Promise<T>) {
  const module = await Pkcs11Module.open(path);
  try {
    return await body(module);
  } finally {
    module.release();
  }
}

/** Opens a session on the selected token (logged in when a PIN is given) for `body`. */
async function withToken<T>(
  args: Args,
  { readWrite = false, requirePin = true } = {},
  body: (keys: TokenKeys, module: Pkcs11Module, loggedIn: boolean) => T | Promise<T>,
): Promise<T> {
  const selection = hsmTokenFromArgs(args);
  const pin = selection.pin === undefined
    ? undefined
    : await readSecret(selection.pin, { label: "HSM PIN", field: "--hsm-pin", warn });
  if (pin === undefined && requirePin) {
    throw new UsageError(`${args.spec.name}: --hsm-pin is required`);
  }
  return await withModule(selection.module, async (module) => {
    const token = module.findToken(
      selection.token !== undefined ? { label: selection.token } : { slot: selection.slot! },
    );
    // Without a PIN, open a plain session: public objects are visible without login.
    const session = module.openSession(
      pin === undefined ? { ...token, loginRequired: false } : token,
      pin,
      {
        readWrite,
      },
    );
    try {
      return await body(new TokenKeys(module, token, session), module, pin !== undefined);
    } finally {
      module.closeSession(session);
    }
  });
}

async function slots(args: Args): Promise<void> {
  const list = await withModule(args.string("hsm-module")!, (module) => module.slots());
  if (args.boolean("json")) {
    console.log(JSON.stringify(list, null, 2));
    return;
  }
  printTable(
    ["SLOT", "TOKEN", "MANUFACTURER", "MODEL", "SERIAL", "FLAGS"],
    list.map((s) => {
      const t = s.token;
      if (!t) return [String(s.slot), "(no token)", "", "", "", ""];
      const flags = [
        t.initialized ? "" : "uninitialised",
        t.loginRequired ? "login-required" : "",
        t.userPinLocked ? "pin-locked" : "",
        t.mlDsa ? "ml-dsa" : "",
      ].filter(Boolean).join(",");
      return [
        String(s.slot),
        t.initialized ? t.label : "",
        t.manufacturer,
        t.model,
        t.serial,
        flags,
      ];
    }),
  );
}

async function keys(args: Args): Promise<void> {
  const list = await withToken(args, { requirePin: false }, (keys, _module, loggedIn) => {
    if (!loggedIn) console.error("qsign: not logged in (no --hsm-pin): private keys are not shown");
    return keys.list();
  });
  if (args.boolean("json")) {
    console.log(JSON.stringify(list, null, 2));
    return;
  }
  const flag = (value: boolean | undefined) => value === undefined ? "-" : value ? "yes" : "no";
  printTable(
    ["CLASS", "LABEL", "ID", "TYPE", "SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE"],
    list.map((k: KeyListing) => [
      k.class,
      k.label,
      k.id,
      k.type,
      flag(k.sensitive),
      flag(k.extractable),
      flag(k.neverExtractable),
    ]),
  );
}

async function keygen(args: Args): Promise<void> {
  const type = args.choice("type", KEYGEN_TYPES)!;
  const label = args.requireString("key-label");
  const idText = args.string("key-id");
  const id = idText === undefined
    ? Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex")
    : parseKeyId(idText, "--key-id");
  const mldsaKeyPath = args.string("composite-mldsa-key");
  if (mldsaKeyPath !== undefined && type !== "ec-p384") {
    throw new UsageError("hsm keygen: --composite-mldsa-key goes with --type ec-p384");
  }
  // The output is checked before the token is touched, and a pair whose file cannot be
  // written is destroyed again: a failed keygen leaves no orphan key in the token.
  if (mldsaKeyPath !== undefined) await checkOutputDirectory(mldsaKeyPath);
  const mldsaHalf = mldsaKeyPath === undefined ? undefined : await newMlDsaHalf(mldsaKeyPath);
  const key = await withToken(args, { readWrite: true }, async (keys, module) => {
    const key = keys.generate(type, label, id, module.mechanisms(keys.token));
    try {
      await mldsaHalf?.write();
    } catch (e) {
      keys.deletePair({ id: key.id });
      throw e;
    }
    return key;
  });
  console.log(
    `generated ${type} key pair "${key.label}" (CKA_ID ${key.id}) in the token: ` +
      "private key sensitive, not extractable",
  );
  if (mldsaHalf) {
    console.log(`wrote ${mldsaKeyPath}: the ML-DSA-65 half of the composite key (PKCS#8, 0600)`);
  }
}

async function deletePair(args: Args): Promise<void> {
  const label = args.string("key-label");
  const keyId = args.string("key-id");
  if ((label === undefined) === (keyId === undefined)) {
    throw new UsageError("hsm delete: give exactly one of --key-label and --key-id");
  }
  const selector = label !== undefined ? { label } : { id: parseKeyId(keyId!, "--key-id") };
  const removed = await withToken(args, { readWrite: true }, (keys) => keys.deletePair(selector));
  console.log(
    `deleted ${label !== undefined ? `"${label}"` : `CKA_ID ${selector.id}`}: ` +
      `${removed.privateKeys} private and ${removed.publicKeys} public key object(s)`,
  );
}

/** Names an output file's directory that is missing, before anything is made for it. */
async function checkOutputDirectory(path: string): Promise<void> {
  const dir = dirname(path);
  const info = await Deno.stat(dir).catch(() => undefined);
  if (!info?.isDirectory) throw new InputError(dir, `no such directory (for ${path})`);
}

async function csr(args: Args): Promise<void> {
  const subject = parseSubject(args.requireString("subject"));
  const sans = parseSans(args.list("san", { splitCommas: true }));
  const out = args.requireString("out");
  await checkOutputDirectory(out);
  const keyLabel = args.string("key-label");
  const keyId = args.string("key-id");
  if ((keyLabel === undefined) === (keyId === undefined)) {
    throw new UsageError("hsm csr: give exactly one of --key-label and --key-id");
  }
  const hsm = await openHsmSigner({
    ...hsmTokenFromArgs(args),
    keyLabel,
    keyId: keyId === undefined ? undefined : parseKeyId(keyId, "--key-id"),
    sessions: 1,
    warn,
    healthCheckIntervalMs: 0,
  });
  try {
    const mldsaKeyPath = args.string("composite-mldsa-key");
    const composite = mldsaKeyPath === undefined
      ? undefined
      : await TokenCompositeKey.open(hsm.signer, mldsaKeyPath);
    const request = await createCertificateRequest({
      subject,
      signer: composite ? composite.tbsSigner() : await tokenTbsSigner(hsm.signer),
      subjectAltNames: sans,
    });
    await writeFileAtomic(out, request.toString("pem") + "\n").catch((e) => {
      throw new OsError(`${out}: cannot write the request`, e);
    });
    console.log(
      `wrote ${out}: ${request.subject}, signed by ${(composite ?? hsm.signer).description}`,
    );
  } finally {
    await hsm.close();
  }
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) {
    console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
  }
}
