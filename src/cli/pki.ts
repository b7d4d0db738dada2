/**
 * `qsign pki`: the embedded QSIGN PKI. Subcommands `init`, `issue`, `revoke`, `crl`, `show` and
 * `verify`, each with its own options and `--help`.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { type Args, type CommandSpec, parseCommand } from "./args.ts";
import { dirname } from "node:path";
import { InputError, osErrorText, QsignError, UsageError } from "../errors.ts";
import { lazySecret, readSecret } from "../secrets.ts";
import { writeFileAtomic } from "../fsutil.ts";
import {
  CA_PASSPHRASE_ENV,
  type CaKeyOptions,
  certificateSerial,
  generateCrl,
  initPki,
  issueLeaf,
  REVOCATION_REASONS,
  revokeCertificate,
} from "../pki/ca.ts";
import { bufferSource } from "../pki/der.ts";
import { describe, parsePkiObject } from "../pki/describe.ts";
import { DEFAULT_KEY_ALGORITHM, KEY_ALGORITHMS, writePrivateKeyFile } from "../pki/keys.ts";
import {
  pemDecodeAll,
  pemEncode,
  readCertificatesFile,
  readDerObjects,
  readInputFile,
} from "../pki/pem.ts";
import { ChainVerificationError, CRL_CHECKS, type Purpose, verifyChain } from "../pki/verify.ts";

const PROFILES = ["server", "client"] as const;
const CAS = ["root", "server", "client"] as const;
const PURPOSES = ["server", "client", "any"] as const;

const algOption = {
  type: "string",
  value: "ALG",
  help: `key algorithm: ${KEY_ALGORITHMS.join("|")}`,
  default: DEFAULT_KEY_ALGORITHM,
  choices: KEY_ALGORITHMS,
} as const;
const dirOption = { type: "string", value: "DIR", help: "PKI directory" } as const;
const passphraseOption = {
  type: "string",
  value: "REF",
  help: `passphrase of the CA keys: file:///path, env:NAME, credential:NAME or prompt ` +
    `(default: the reference in ${CA_PASSPHRASE_ENV})`,
} as const;
const rootDirOption = {
  type: "string",
  value: "DIR",
  help: "where the Root CA's key is kept, when not in --dir (offline media)",
} as const;

const SPECS = {
  init: {
    name: "pki init",
    summary: "create Root CA, Server and Client intermediate CAs, and a server and a client leaf",
    options: {
      dir: dirOption,
      alg: algOption,
      org: {
        type: "string",
        value: "ORG",
        help: "organization (O) of every name",
        default: "QSIGN",
      },
      force: { type: "boolean", help: "replace an existing PKI in DIR" },
      passphrase: {
        ...passphraseOption,
        help: "encrypt the CA keys (PKCS#8 PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC) with this " +
          `passphrase: file:///path, env:NAME, credential:NAME or prompt (default: the ` +
          `reference in ${CA_PASSPHRASE_ENV}; without one the keys are written unencrypted)`,
      },
      "root-dir": {
        ...rootDirOption,
        help: "keep the Root CA offline: write its key (and certificate) to DIR, not --dir; " +
          "when DIR already holds a Root CA, it signs the new intermediates",
      },
    },
  },
  issue: {
    name: "pki issue",
    summary: "issue a leaf certificate from the Server or Client intermediate CA",
    options: {
      dir: dirOption,
      profile: {
        type: "string",
        value: "server|client",
        help: "which intermediate CA and EKU",
        choices: PROFILES,
      },
      cn: {
        type: "string",
        value: "NAME",
        help: "subject common name (with --csr: optional, and must match the request's)",
      },
      subject: {
        type: "string",
        value: "DN",
        help: 'the whole subject, e.g. "CN=gw.example, OU=payments, O=ACME" (instead of --cn)',
      },
      ou: {
        type: "string",
        value: "UNIT",
        multiple: true,
        help: "organizational unit (OU) of the subject, as allow_ou checks it",
      },
      force: { type: "boolean", help: "overwrite existing PREFIX.crt and PREFIX.key" },
      passphrase: passphraseOption,
      san: {
        type: "string",
        value: "TYPE:VALUE",
        multiple: true,
        help: "DNS:…, IP:…, URI:…, EMAIL:… (comma-separated too; default DNS:<cn>)",
      },
      ttl: {
        type: "string",
        value: "DURATION",
        help: "lifetime, e.g. 24h, 90m, 30d (default 365d)",
      },
      days: { type: "string", value: "N", help: "lifetime in days (instead of --ttl)" },
      alg: { ...algOption, default: undefined, help: `${algOption.help} (default: the CA's)` },
      csr: { type: "string", value: "FILE", help: "certify the key of this PKCS#10 request" },
      out: {
        type: "string",
        value: "PREFIX",
        help: "write PREFIX.crt (leaf + intermediate) and PREFIX.key",
      },
    },
  },
  revoke: {
    name: "pki revoke",
    summary: "revoke a leaf or an intermediate CA of this PKI (then publish a CRL with pki crl)",
    positionals: [{ name: "SERIAL|CERT.pem", help: "hex serial number, or the certificate file" }],
    options: {
      dir: dirOption,
      reason: {
        type: "string",
        value: "REASON",
        help: REVOCATION_REASONS.join("|"),
        default: "unspecified",
        choices: REVOCATION_REASONS,
      },
    },
  },
  crl: {
    name: "pki crl",
    summary: "write a CRL signed by the Root CA (for the intermediates) or an intermediate CA",
    options: {
      dir: dirOption,
      ca: {
        type: "string",
        value: "root|server|client",
        choices: CAS,
        help:
          "which CA signs it; root lists revoked intermediates (OpenSSL's chain check needs it)",
      },
      out: { type: "string", value: "FILE", help: "where to write the CRL (PEM)" },
      days: { type: "string", value: "N", help: "days until nextUpdate", default: "7" },
      passphrase: passphraseOption,
      "root-dir": rootDirOption,
    },
  },
  show: {
    name: "pki show",
    summary: "summarize certificates, CSRs and CRLs (PEM or DER)",
    positionals: [{ name: "FILE", help: "file to show" }],
    options: {},
  },
  verify: {
    name: "pki verify",
    summary: "validate a certificate chain (RFC 5280) and its name (RFC 6125)",
    positionals: [{
      name: "LEAF.pem",
      help: "leaf certificate; certificates after it in the file are untrusted intermediates",
    }],
    options: {
      trust: { type: "string", value: "ROOTS.pem", help: "trust anchors" },
      untrusted: {
        type: "string",
        value: "CERTS.pem",
        multiple: true,
        help: "untrusted intermediate certificates",
      },
      crl: { type: "string", value: "CRL.pem", multiple: true, help: "CRLs to check revocation" },
      "crl-check": {
        type: "string",
        value: "available|leaf|chain",
        help: "which certificates must have a CRL from their issuer (chain: all below the root)",
        default: "available",
      },
      purpose: { type: "string", value: "server|client|any", help: "TLS role", default: "any" },
      host: { type: "string", value: "NAME", help: "DNS name the leaf must carry" },
      ip: { type: "string", value: "ADDR", help: "IP address the leaf must carry" },
      at: { type: "string", value: "RFC3339", help: "validation time (default now)" },
      "max-depth": {
        type: "string",
        value: "N",
        help: "most intermediate CA certificates in the path",
        default: "8",
      },
    },
  },
} satisfies Record<string, CommandSpec>;

/** Every `qsign pki` subcommand's options, for completion and the man page. */
export const COMMAND_SPECS: CommandSpec[] = Object.values(SPECS);

type Subcommand = keyof typeof SPECS;

const HANDLERS: Record<Subcommand, (args: Args) => Promise<number>> = {
  init: runInit,
  issue: runIssue,
  revoke: runRevoke,
  crl: runCrl,
  show: runShow,
  verify: runVerify,
};

function usage(): string {
  return [
    "usage: qsign pki SUBCOMMAND [options]   (qsign pki SUBCOMMAND --help for its options)",
    "",
    "The embedded QSIGN PKI.",
    "",
    "subcommands:",
    ...Object.entries(SPECS).map(([name, spec]) => `  ${name.padEnd(8)}${spec.summary}`),
  ].join("\n");
}

/** Entry point of `qsign pki`. */
export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
    console.log(usage());
    return sub === undefined ? 2 : 0;
  }
  if (!(sub in SPECS)) {
    throw new UsageError(`pki: unknown subcommand "${sub}" (see qsign pki --help)`);
  }
  const name = sub as Subcommand;
  const args = parseCommand(SPECS[name], rest);
  if (!args) return 0;
  return await HANDLERS[name](args);
}

async function runInit(args: Args): Promise<number> {
  const dir = args.requireString("dir");
  for (const path of [dir, args.string("root-dir")]) {
    const info = path === undefined ? undefined : await Deno.stat(path).catch(() => undefined);
    if (info && !info.isDirectory) throw new InputError(path!, "exists and is not a directory");
  }
  const passphrase = await newPassphrase(args);
  if (passphrase === undefined) {
    console.error(
      "qsign pki init: the CA keys are written unencrypted (development); for production give " +
        "--passphrase and keep the root offline with --root-dir (see docs/production.md)",
    );
  }
  const files = await initPki({
    dir,
    alg: args.choice("alg", KEY_ALGORITHMS),
    org: args.string("org"),
    force: args.boolean("force"),
    passphrase,
    rootDir: args.string("root-dir"),
  });
  for (const file of files) console.log(`wrote ${file}`);
  return 0;
}

/** The passphrase that encrypts new CA keys: asked twice when prompted, so a typo is caught. */
async function newPassphrase(args: Args): Promise<string | undefined> {
  const ref = args.string("passphrase") ?? Deno.env.get(CA_PASSPHRASE_ENV);
  if (ref === undefined) return undefined;
  const field = args.has("passphrase") ? "--passphrase" : CA_PASSPHRASE_ENV;
  const options = { label: "CA key passphrase", field, warn };
  const value = await readSecret(ref, options);
  if (ref === "prompt" && value !== await readSecret(ref, { ...options, label: "again" })) {
    throw new UsageError("pki init: the two passphrases differ");
  }
  if (value.length < 8) {
    throw new UsageError(`pki init: ${field}: a CA key passphrase needs 8 characters or more`);
  }
  return value;
}

/** How the CA keys of `args` are opened: --passphrase (else QSIGN_CA_PASSPHRASE), --root-dir. */
function caKeyOptions(args: Args): CaKeyOptions {
  const ref = args.string("passphrase");
  return {
    passphrase: ref === undefined
      ? undefined
      : lazySecret(ref, { label: "CA key passphrase", field: "--passphrase", warn }),
    rootDir: args.string("root-dir"),
  };
}

function warn(message: string): void {
  console.error(`qsign: ${message}`);
}

async function runIssue(args: Args): Promise<number> {
  const dir = args.requireString("dir");
  const profile = requireChoice(args, "profile", PROFILES);
  const csrPath = args.string("csr");
  // With a CSR (or --subject) the subject is named; --cn then only has to agree with it.
  const cn = csrPath || args.has("subject") ? args.string("cn") : args.requireString("cn");
  const out = args.requireString("out");
  if (args.has("ttl") && args.has("days")) {
    throw new UsageError("pki issue: give --ttl or --days, not both");
  }
  const ttlSeconds = args.has("days")
    ? args.integer("days", { min: 1, max: 36500 })! * 86400
    : args.has("ttl")
    ? parseDuration(args.requireString("ttl"))
    : undefined;
  const csrDer = csrPath ? (await readDerObjects(csrPath, "CERTIFICATE REQUEST"))[0] : undefined;
  if (csrPath && args.has("alg")) {
    throw new UsageError("pki issue: --alg does not apply with --csr");
  }
  const outputs = [`${out}.crt`, ...(csrDer ? [] : [`${out}.key`])];
  await checkOutputs(outputs, args.boolean("force"));
  const issued = await issueLeaf({
    dir,
    profile,
    cn,
    subject: args.string("subject"),
    ou: args.list("ou"),
    sans: args.list("san", { splitCommas: true }),
    ttlSeconds,
    alg: args.choice("alg", KEY_ALGORITHMS),
    csrDer,
    caKey: caKeyOptions(args),
    // Written before the index records the serial: a failed write leaves no record behind.
    deliver: async (leaf) => {
      // The key first: a certificate without its key is useless, a key without a certificate
      // harmless.
      if (leaf.key) await writePrivateKeyFile(`${out}.key`, leaf.key);
      await writeOutput(`${out}.crt`, leaf.certPem);
    },
  });
  console.log(`issued serial ${issued.serial}, valid until ${issued.notAfter.toISOString()}`);
  console.log(`wrote ${out}.crt${issued.key ? ` and ${out}.key` : ""}`);
  return 0;
}

async function runRevoke(args: Args): Promise<number> {
  const dir = args.requireString("dir");
  const target = args.positional(0, "SERIAL or certificate file");
  const reason = args.choice("reason", REVOCATION_REASONS);
  const serial = await isFile(target)
    ? certificateSerial((await readCertificatesFile(target))[0])
    : target;
  const entry = await revokeCertificate({ dir, serial, reason });
  console.log(`revoked ${entry.serial} (${entry.subject}), reason ${entry.reason}`);
  return 0;
}

async function runCrl(args: Args): Promise<number> {
  const dir = args.requireString("dir");
  const profile = requireChoice(args, "ca", CAS);
  const out = args.requireString("out");
  const days = args.integer("days", { min: 1, max: 3650 });
  const der = await generateCrl({ dir, profile, days, caKey: caKeyOptions(args) });
  await writeOutput(out, pemEncode("X509 CRL", der));
  const crl = new x509.X509Crl(bufferSource(der));
  console.log(
    `wrote ${out}: ${crl.entries.length} revoked, next update ${crl.nextUpdate?.toISOString()}`,
  );
  return 0;
}

async function runShow(args: Args): Promise<number> {
  const path = args.positional(0, "FILE");
  const bytes = await readInputFile(path);
  let ders: Uint8Array[];
  if (bytes[0] === 0x30) {
    ders = [bytes];
  } else {
    try {
      ders = pemDecodeAll(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new InputError(path, `not valid PEM (${(e as Error).message})`);
    }
  }
  if (ders.length === 0) throw new InputError(path, "no PEM blocks and not DER");
  const out: string[] = [];
  for (const [i, der] of ders.entries()) {
    const object = parsePkiObject(der);
    if (!object) throw new InputError(path, `object #${i + 1} is not a certificate, CSR or CRL`);
    if (out.length) out.push("");
    out.push(`${object.kind} #${i + 1}`, ...await describe(object));
  }
  console.log(out.join("\n"));
  return 0;
}

async function runVerify(args: Args): Promise<number> {
  const leafPath = args.positional(0, "LEAF.pem");
  const trust = await readCertificatesFile(args.requireString("trust"));
  const [leaf, ...leafChain] = await readCertificatesFile(leafPath);
  const untrusted = [...leafChain];
  for (const path of args.list("untrusted")) untrusted.push(...await readCertificatesFile(path));
  const crls: Uint8Array[] = [];
  for (const path of args.list("crl")) crls.push(...await readCrlFile(path));
  if (args.has("host") && args.has("ip")) {
    throw new UsageError("pki verify: give --host or --ip, not both");
  }
  let result;
  try {
    result = await verifyChain(leaf, {
      trustAnchors: trust,
      intermediates: untrusted,
      crls,
      crlCheck: args.choice("crl-check", CRL_CHECKS),
      purpose: args.choice("purpose", PURPOSES) as Purpose,
      host: args.string("host"),
      ip: args.string("ip"),
      at: args.has("at") ? parseTime(args.requireString("at")) : undefined,
      maxDepth: args.integer("max-depth", { min: 0, max: 16 }),
    });
  } catch (e) {
    if (!(e instanceof ChainVerificationError)) throw e;
    console.error(refusalReport(e));
    return 1;
  }
  for (const cert of result.chain) console.log(cert.subject);
  return 0;
}

/**
 * A refused chain for people, on one line as every qsign error: what failed, then on which
 * certificate of the path and under which rule (RFC 5280, RFC 6125 or CA/Browser Forum section).
 */
function refusalReport(e: ChainVerificationError): string {
  const position = e.index === undefined
    ? undefined
    : e.index === 0
    ? "the leaf"
    : `certificate ${e.index + 1} of the path (${e.index} above the leaf)`;
  const where = [position, e.subject ? `"${e.subject}"` : undefined].filter(Boolean).join(" ");
  const context = [where && `certificate: ${where}`, e.rule && `rule: ${e.rule}`].filter(Boolean);
  return `qsign: ${e.message}${context.length ? ` [${context.join("; ")}]` : ""}`;
}

async function readCrlFile(path: string): Promise<Uint8Array[]> {
  const ders = await readDerObjects(path, "X509 CRL");
  for (const der of ders) {
    try {
      new x509.X509Crl(bufferSource(der)).thisUpdate;
    } catch (e) {
      throw new InputError(path, `CRL cannot be parsed (${(e as Error).message})`);
    }
  }
  return ders;
}

/**
 * Refuses to replace existing output files without `--force`, and names a directory that is
 * missing or not writable before anything is issued.
 */
async function checkOutputs(paths: string[], force: boolean): Promise<void> {
  for (const path of paths) {
    const existing = await Deno.lstat(path).catch(() => undefined);
    if (existing && !force) {
      throw new UsageError(`pki issue: ${path} exists; use --force to replace it`);
    }
    const dir = dirname(path);
    const info = await Deno.stat(dir).catch(() => undefined);
    if (!info?.isDirectory) {
      throw new InputError(dir, `no such directory (for ${path})`);
    }
  }
}

/** Writes an output file atomically; a failure names the file. */
async function writeOutput(path: string, content: string): Promise<void> {
  try {
    await writeFileAtomic(path, content);
  } catch (e) {
    throw new QsignError(`${path}: cannot write (${osErrorText(e)})`, 1, { cause: e });
  }
}

function requireChoice<T extends string>(args: Args, name: string, choices: readonly T[]): T {
  const value = args.choice(name, choices);
  if (value === undefined) throw new UsageError(`${args.spec.name}: --${name} is required`);
  return value;
}

/** `90s`, `30m`, `24h`, `7d` (or plain seconds) → seconds. */
function parseDuration(text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!match || Number(match[1]) === 0) {
    throw new UsageError(`--ttl: "${text}" is not a duration like 24h, 90m, 30d`);
  }
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2]]!;
  return Number(match[1]) * unit;
}

function parseTime(text: string): Date {
  const rfc3339 = /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?)?$/;
  const date = new Date(text);
  if (!rfc3339.test(text) || isNaN(date.getTime())) {
    throw new UsageError(`--at: "${text}" is not an RFC 3339 time like 2030-01-31T12:00:00Z`);
  }
  return date;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}
