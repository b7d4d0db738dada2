/**
 * `qsign vault issue`: one certificate from HashiCorp Vault's PKI secrets engine, written to
 * PREFIX.crt (leaf and intermediates, as a server sends them), PREFIX.key (0600, when Vault made
 * the key) and PREFIX.chain.pem (Vault's CA chain). With `--csr` or `--hsm-key-label` the key
 * already exists and Vault only signs (`/sign/<role>`); otherwise Vault makes it (`/issue/<role>`).
 */
import { type CommandSpec, parseCommand } from "./args.ts";
import { UsageError } from "../errors.ts";
import { writeFileAtomic } from "../fsutil.ts";
import { HSM_TOKEN_OPTIONS, hsmTokenFromArgs } from "./hsm_options.ts";
import { parseDurationMs } from "../config/values.ts";
import { readDerObjects } from "../pki/pem.ts";
import { tokenKeyCsr } from "../issuer/csr.ts";
import { servedFiles } from "../issuer/renewal.ts";
import { DEFAULT_RETRY, DEFAULT_VAULT_ROLES, VaultClient, VaultIssuer } from "../issuer/vault.ts";
import type { VaultAuth } from "../issuer/vault.ts";

const SPEC: CommandSpec = {
  name: "vault issue",
  summary: "Get a certificate from HashiCorp Vault PKI (Vault's key, a CSR, or an HSM key).",
  options: {
    cn: { type: "string", value: "NAME", help: "common name, e.g. qtls-server.qsign.local" },
    san: {
      type: "string",
      multiple: true,
      value: "SAN",
      help: "subject alternative name: DNS:name, IP:addr, URI:uri (comma-separated too)",
    },
    profile: {
      type: "string",
      value: "server|client",
      help: "which role to use when --role is not given",
      default: "server",
      choices: ["server", "client"],
    },
    role: {
      type: "string",
      value: "ROLE",
      help:
        `Vault PKI role (default ${DEFAULT_VAULT_ROLES.server} or ${DEFAULT_VAULT_ROLES.client})`,
    },
    ttl: { type: "string", value: "DURATION", help: "lifetime, e.g. 24h", default: "24h" },
    out: {
      type: "string",
      value: "PREFIX",
      help: "write PREFIX.crt, PREFIX.key, PREFIX.chain.pem",
    },
    csr: { type: "string", value: "FILE", help: "have Vault sign this CSR (PEM or DER)" },
    "hsm-key-label": {
      type: "string",
      value: "LABEL",
      help: "make the CSR inside the token with this key (with --hsm-*)",
      aliases: ["key-label"],
    },
    ...HSM_TOKEN_OPTIONS,
    "vault-addr": { type: "string", value: "URL", help: "Vault address (env VAULT_ADDR)" },
    token: {
      type: "string",
      value: "REF",
      help: "Vault token: file:///path, env:NAME or credential:NAME",
      default: "env:VAULT_TOKEN",
    },
    "role-id": { type: "string", value: "REF", help: "AppRole role_id (instead of --token)" },
    "secret-id": { type: "string", value: "REF", help: "AppRole secret_id: file:///path, env:…" },
    "approle-mount": {
      type: "string",
      value: "PATH",
      help: "where AppRole is mounted",
      default: "approle",
    },
    namespace: { type: "string", value: "NS", help: "X-Vault-Namespace (env VAULT_NAMESPACE)" },
    mount: { type: "string", value: "PATH", help: "PKI secrets engine mount", default: "pki" },
    "ca-file": {
      type: "string",
      value: "FILE",
      help: "CA certificates for Vault's TLS (env VAULT_CACERT)",
    },
    timeout: {
      type: "string",
      value: "DURATION",
      help: "keep retrying a sealed or unreachable Vault this long",
      default: "60s",
    },
  },
};

/** This command's options, for completion and the man page. */
export const COMMAND_SPECS: CommandSpec[] = [SPEC];

export async function run(argv: string[]): Promise<number> {
  const [subcommand, ...rest] = argv;
  if (subcommand === undefined || subcommand === "--help" || subcommand === "-h") {
    console.log("usage: qsign vault issue [options]   (qsign vault issue --help)");
    return subcommand === undefined ? 2 : 0;
  }
  if (subcommand !== "issue") {
    throw new UsageError(`vault: unknown subcommand "${subcommand}" (only: issue)`);
  }
  const args = parseCommand(SPEC, rest);
  if (!args) return 0;
  const cn = args.requireString("cn");
  const out = args.requireString("out");
  const profile = args.choice("profile", ["server", "client"] as const)!;
  const ttlSeconds = parseDurationMs(args.string("ttl"), { field: "--ttl" }) / 1000;
  const sans = args.list("san", { splitCommas: true });
  const address = args.string("vault-addr") ?? Deno.env.get("VAULT_ADDR");
  if (!address) throw new UsageError("vault issue: --vault-addr is required (or set VAULT_ADDR)");
  if (args.has("csr") && args.has("hsm-key-label")) {
    throw new UsageError("vault issue: give --csr or --hsm-key-label, not both");
  }

  const csrDer = args.has("csr")
    ? (await readDerObjects(args.string("csr")!, "CERTIFICATE REQUEST"))[0]
    : args.has("hsm-key-label")
    ? await tokenKeyCsr(
      { ...hsmTokenFromArgs(args), keyLabel: args.string("hsm-key-label") },
      { cn, sans },
    )
    : undefined;

  const caFile = args.string("ca-file") ?? Deno.env.get("VAULT_CACERT");
  using client = new VaultClient({
    address,
    auth: vaultAuth(
      args.string("token")!,
      args.string("role-id"),
      args.string("secret-id"),
      args.string("approle-mount")!,
    ),
    namespace: args.string("namespace") ?? Deno.env.get("VAULT_NAMESPACE"),
    caCertPem: caFile === undefined ? undefined : await Deno.readTextFile(caFile),
    retry: {
      ...DEFAULT_RETRY,
      deadlineMs: parseDurationMs(args.string("timeout"), { field: "--timeout" }),
    },
    log: (message) => console.error(`qsign vault: ${message}`),
  });
  const role = args.string("role") ?? DEFAULT_VAULT_ROLES[profile];
  const issuer = new VaultIssuer(client, {
    mount: args.string("mount"),
    roles: { ...DEFAULT_VAULT_ROLES, [profile]: role },
  });
  const issued = await issuer.issue({ profile, cn, sans, ttlSeconds, csrDer });

  const files = servedFiles(issued);
  // Key first: until the certificate is written the old one (if any) is not replaced.
  if (files.keyPem !== undefined) {
    await writeFileAtomic(`${out}.key`, files.keyPem, { mode: 0o600 });
  }
  await writeFileAtomic(`${out}.chain.pem`, files.chainPem);
  await writeFileAtomic(`${out}.crt`, files.certPem);
  console.log(JSON.stringify({
    cn,
    role,
    serial: issued.serial,
    not_after: issued.notAfter.toISOString(),
    cert: `${out}.crt`,
    key: files.keyPem === undefined ? null : `${out}.key`,
    chain: `${out}.chain.pem`,
  }));
  return 0;
}

function vaultAuth(
  token: string,
  roleId: string | undefined,
  secretId: string | undefined,
  mount: string,
): VaultAuth {
  if (roleId === undefined && secretId === undefined) {
    return { method: "token", token: { ref: token, field: "--token" } };
  }
  if (roleId === undefined || secretId === undefined) {
    throw new UsageError("vault issue: AppRole needs both --role-id and --secret-id");
  }
  return {
    method: "approle",
    roleId: { ref: roleId, field: "--role-id" },
    secretId: { ref: secretId, field: "--secret-id" },
    mount,
  };
}
