/**
 * The renewal's part of the qsign config file: the `[renewal]` table and one `[[certificate]]`
 * table per managed certificate, read from the same TOML/YAML file `qsign serve --config` reads,
 * by the same reader (src/config/file.ts), which also checks the daemon's settings. Values are
 * coerced with the daemon's `coerce`, so paths, durations and lists behave alike in both.
 *
 * ```toml
 * pid_file = "/run/qsign/qsign.pid"   # top level, shared with qsign serve: SIGHUP goes to this pid
 *
 * [renewal]
 * renew_before = "1/3"                # of the lifetime (also 0.33, "33%", or a duration "8h")
 * ca_dir = "/etc/qtls/pki"            # the embedded CA (qsign pki init), for issuer = "local"
 *
 * [renewal.vault]                     # for issuer = "vault"
 * address = "https://vault.example.org:8200"   # default $VAULT_ADDR
 * token = "file:///etc/qtls/vault-token"       # or role_id + secret_id; default env:VAULT_TOKEN
 * namespace = "qtls"                           # default $VAULT_NAMESPACE
 * mount = "pki"
 * server_role = "qtls-server"
 * client_role = "qtls-client"
 * ca_file = "/etc/qtls/vault-ca.pem"           # default $VAULT_CACERT
 *
 * [[certificate]]
 * cert = "/etc/qtls/server.crt"
 * key = "/etc/qtls/server.key"        # omit with key_source = "hsm:LABEL"
 * chain = "/etc/qtls/ca-chain.pem"    # optional
 * issuer = "local"                    # local | vault
 * profile = "server"                  # server | client
 * cn = "qtls-server.qsign.local"
 * sans = ["qtls-server.qsign.local", "127.0.0.1"]   # or "DNS:…", "IP:…", "URI:…"
 * ttl = "24h"
 * key_source = "new"                  # new | reuse | hsm:LABEL
 *
 * [[crl]]                             # a CRL the daemon checks clients against, kept current
 * file = "/etc/qtls/client-ca.crl"
 * ca = "client"                       # re-signed by this CA of ca_dir (root | server | client)
 * days = 7                            # validity of a re-signed CRL
 * # or: url = "http://pki.example.org/client-ca.crl" and issuer = "/etc/qtls/client-ca.crt"
 * renew_before = "1/3"                # of its validity, as for certificates
 * ```
 */
import { readConfigFile } from "../config/file.ts";
import { type FlagValues, loadGlobalSetting, NO_FLAGS } from "../config/load.ts";
import { coerce, parseDurationMs } from "../config/values.ts";
import type { Origin } from "../config/types.ts";
import type { ValueKind } from "../config/values.ts";
import { ConfigError } from "../errors.ts";
import { normalizeIp, parseSubjectAltName } from "../pki/certificate.ts";
import type { CaName } from "../pki/ca.ts";
import { KEY_ALGORITHMS, type KeyAlgorithm } from "../pki/keys.ts";
import type { CertificateProfile } from "./issuer.ts";
import type { ManagedPaths } from "./store.ts";
import { DEFAULT_VAULT_ROLES, type VaultAuth } from "./vault.ts";

/** When a certificate is due: a share of its lifetime, or a fixed time before notAfter. */
export type RenewBefore = { fraction: number } | { seconds: number };

/** Where a renewed certificate's key comes from. */
export type KeySource =
  | { kind: "new" }
  | { kind: "reuse" }
  | { kind: "hsm"; label: string };

/** One `[[certificate]]`. */
export interface ManagedCertificate {
  /** For result lines and messages: `name`, or the certificate path. */
  name: string;
  paths: ManagedPaths;
  issuer: "local" | "vault";
  profile: CertificateProfile;
  cn: string;
  sans: string[];
  ttlSeconds: number;
  keySource: KeySource;
  /**
   * Key algorithm of new keys (e.g. `mldsa65`): what the embedded CA generates; for Vault and
   * OpenBao, whose role decides, what every issued leaf must have (OpenBao: `key_type=mldsa`).
   */
  keyAlgorithm?: KeyAlgorithm;
  renewBefore: RenewBefore;
  /** The table's field path, e.g. `certificate[0]`, for later error messages. */
  field: string;
}

/** One `[[crl]]`: a CRL file kept current by re-signing or fetching. */
export interface ManagedCrl {
  /** For result lines and messages: `name`, or the file path. */
  name: string;
  file: string;
  source:
    | { kind: "local"; ca: CaName; days: number }
    | { kind: "url"; url: string; issuer: string };
  renewBefore: RenewBefore;
  field: string;
}

/** `[renewal.vault]`, with Vault's environment variables as defaults. */
export interface VaultSettings {
  address: string;
  auth: VaultAuth;
  namespace?: string;
  mount: string;
  roles: { server: string; client: string };
  caFile?: string;
  /** How long to keep retrying a sealed or unreachable Vault, per request. */
  timeoutMs: number;
}

/** `[renewal.hsm]`: the token holding `hsm:LABEL` keys. */
export interface RenewalHsmSettings {
  module: string;
  token: string;
  /** A secret reference: `file:///…`, `env:NAME`, `credential:NAME`. */
  pin: string;
}

export interface RenewalConfig {
  file: string;
  /** The daemon's pid file (`pid_file`, `--pid-file`, `QSIGN_PID_FILE`), as `qsign serve` reads it. */
  pidFile?: string;
  caDir?: string;
  vault?: VaultSettings;
  hsm?: RenewalHsmSettings;
  certificates: ManagedCertificate[];
  crls: ManagedCrl[];
}

/** Where settings besides the file come from: `qsign renew`'s flags and the environment. */
export interface RenewalSources {
  flags?: FlagValues;
  /** `QSIGN_PID_FILE`, and Vault's `VAULT_ADDR`, `VAULT_NAMESPACE`, `VAULT_CACERT`. */
  env: Record<string, string | undefined>;
}

export const DEFAULT_RENEW_BEFORE: RenewBefore = { fraction: 1 / 3 };

type Table = Record<string, unknown>;

/**
 * Reads the renewal settings of the config file `path` (checking the daemon's settings in it
 * too: one file, one verdict). Throws `ConfigError` naming the file and field.
 */
export async function loadRenewalConfig(
  path: string,
  sources: RenewalSources = { env: Deno.env.toObject() },
): Promise<RenewalConfig> {
  const configFile = await readConfigFile(path);
  const { document } = configFile;
  const file = configFile.path;
  const reader = new TableReader(file);
  const renewal = reader.table(document.renewal, "renewal") ?? {};
  if ("pid_file" in renewal) {
    reader.fail(
      "renewal.pid_file",
      "pid_file is shared with qsign serve: set it once, at the top of the file",
    );
  }
  reader.only(renewal, "renewal", ["renew_before", "ca_dir", "vault", "hsm"]);
  const renewBefore = renewal.renew_before === undefined
    ? DEFAULT_RENEW_BEFORE
    : reader.renewBefore(renewal.renew_before, "renewal.renew_before");
  const list = document.certificate ?? [];
  if (!Array.isArray(list)) {
    throw new ConfigError(
      "certificate",
      "must be a list of tables ([[certificate]] in TOML)",
      file,
    );
  }
  const certificates = list.map((raw, i) =>
    reader.certificate(reader.table(raw, `certificate[${i}]`)!, `certificate[${i}]`, renewBefore)
  );
  const crlList = document.crl ?? [];
  if (!Array.isArray(crlList)) {
    throw new ConfigError("crl", "must be a list of tables ([[crl]] in TOML)", file);
  }
  const crls = crlList.map((raw, i) =>
    reader.crl(reader.table(raw, `crl[${i}]`)!, `crl[${i}]`, renewBefore)
  );
  const config: RenewalConfig = {
    file,
    pidFile: loadGlobalSetting(
      "pid_file",
      { flags: sources.flags ?? NO_FLAGS, env: sources.env },
      configFile,
    ) as string | undefined,
    caDir: reader.optional(renewal, "renewal", "ca_dir", { type: "path" }),
    vault: reader.vault(reader.table(renewal.vault, "renewal.vault"), sources.env),
    hsm: reader.hsm(reader.table(renewal.hsm, "renewal.hsm")),
    certificates,
    crls,
  };
  for (const crl of crls) {
    if (crl.source.kind === "local" && config.caDir === undefined) {
      throw new ConfigError("renewal.ca_dir", `is needed by ${crl.field} (ca = …)`, file);
    }
  }
  const crlFiles = new Set<string>();
  for (const crl of crls) {
    if (crlFiles.has(crl.file)) {
      throw new ConfigError(`${crl.field}.file`, `${crl.file} is managed twice`, file);
    }
    crlFiles.add(crl.file);
  }
  for (const cert of certificates) {
    if (cert.issuer === "local" && config.caDir === undefined) {
      throw new ConfigError(
        "renewal.ca_dir",
        `is needed by ${cert.field} (issuer = "local")`,
        file,
      );
    }
    if (cert.issuer === "vault" && config.vault === undefined) {
      throw new ConfigError(
        "renewal.vault.address",
        `is needed by ${cert.field} (issuer = "vault"): set it or VAULT_ADDR`,
        file,
      );
    }
    if (cert.keySource.kind === "hsm" && config.hsm === undefined) {
      throw new ConfigError(
        "renewal.hsm",
        `is needed by ${cert.field} (key_source = "hsm:…")`,
        file,
      );
    }
  }
  const names = new Set<string>();
  for (const cert of certificates) {
    if (names.has(cert.paths.cert)) {
      throw new ConfigError(`${cert.field}.cert`, `${cert.paths.cert} is managed twice`, file);
    }
    names.add(cert.paths.cert);
  }
  return config;
}

/** Typed access to one file's tables; every error names the file and the field. */
class TableReader {
  constructor(readonly file: string) {}

  origin(field: string): Origin {
    return { field, file: this.file };
  }

  fail(field: string, problem: string): never {
    throw new ConfigError(field, problem, this.file);
  }

  table(raw: unknown, field: string): Table | undefined {
    if (raw === undefined) return undefined;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      this.fail(field, "must be a table");
    }
    return raw as Table;
  }

  /** Rejects keys this reader does not know, suggesting none: the list is short. */
  only(table: Table, field: string, known: string[]): void {
    for (const key of Object.keys(table)) {
      if (!known.includes(key)) {
        this.fail(`${field}.${key}`, `unknown setting (known: ${known.join(", ")})`);
      }
    }
  }

  optional<T>(table: Table, field: string, key: string, kind: ValueKind): T | undefined {
    const raw = table[key];
    return raw === undefined ? undefined : coerce(kind, raw, this.origin(`${field}.${key}`)) as T;
  }

  required<T>(table: Table, field: string, key: string, kind: ValueKind): T {
    const value = this.optional<T>(table, field, key, kind);
    if (value === undefined) this.fail(`${field}.${key}`, "is required");
    return value;
  }

  /** `0.33`, `"1/3"`, `"33%"` (of the lifetime) or a duration such as `"8h"`. */
  renewBefore(raw: unknown, field: string): RenewBefore {
    const fraction = typeof raw === "number"
      ? raw
      : typeof raw === "string" && /^\s*\d+\s*\/\s*\d+\s*$/.test(raw)
      ? Number(raw.split("/")[0]) / Number(raw.split("/")[1])
      : typeof raw === "string" && /^\s*\d+(\.\d+)?\s*%\s*$/.test(raw)
      ? Number(raw.trim().slice(0, -1)) / 100
      : undefined;
    if (fraction !== undefined) {
      if (!(fraction > 0 && fraction < 1)) {
        this.fail(field, `as a share of the lifetime must be between 0 and 1, got ${raw}`);
      }
      return { fraction };
    }
    return { seconds: parseDurationMs(raw, this.origin(field)) / 1000 };
  }

  certificate(table: Table, field: string, renewBefore: RenewBefore): ManagedCertificate {
    this.only(table, field, [
      "name",
      "cert",
      "key",
      "chain",
      "issuer",
      "profile",
      "cn",
      "sans",
      "ttl",
      "key_source",
      "key_algorithm",
      "renew_before",
    ]);
    const cert = this.required<string>(table, field, "cert", { type: "path" });
    const key = this.optional<string>(table, field, "key", { type: "path" });
    const keySource = this.keySource(table.key_source, `${field}.key_source`);
    if (keySource.kind === "hsm" && key !== undefined) {
      this.fail(`${field}.key`, "must be omitted when the key is in the HSM (key_source = hsm:…)");
    }
    if (keySource.kind !== "hsm" && key === undefined) {
      this.fail(`${field}.key`, 'is required (or key_source = "hsm:LABEL")');
    }
    const issuer = this.optional<"local" | "vault">(table, field, "issuer", {
      type: "choice",
      choices: ["local", "vault"],
    }) ?? "local";
    const ttlMs = this.required<number>(table, field, "ttl", { type: "duration" });
    if (ttlMs < 60_000) this.fail(`${field}.ttl`, "must be at least one minute");
    return {
      name: this.optional<string>(table, field, "name", { type: "string" }) ?? cert,
      paths: {
        cert,
        key,
        chain: this.optional<string>(table, field, "chain", { type: "path" }),
      },
      issuer,
      profile: this.optional<CertificateProfile>(table, field, "profile", {
        type: "choice",
        choices: ["server", "client"],
      }) ?? "server",
      cn: this.required<string>(table, field, "cn", { type: "string" }),
      sans: (this.optional<string[]>(table, field, "sans", { type: "strings" }) ?? [])
        .map((san, i) => this.subjectAltName(san, `${field}.sans[${i}]`)),
      ttlSeconds: Math.round(ttlMs / 1000),
      keySource,
      keyAlgorithm: this.optional<KeyAlgorithm>(table, field, "key_algorithm", {
        type: "choice",
        choices: KEY_ALGORITHMS,
      }),
      renewBefore: table.renew_before === undefined
        ? renewBefore
        : this.renewBefore(table.renew_before, `${field}.renew_before`),
      field,
    };
  }

  crl(table: Table, field: string, renewBefore: RenewBefore): ManagedCrl {
    this.only(table, field, ["name", "file", "ca", "days", "url", "issuer", "renew_before"]);
    const file = this.required<string>(table, field, "file", { type: "path" });
    const ca = this.optional<CaName>(table, field, "ca", {
      type: "choice",
      choices: ["root", "server", "client"],
    });
    const url = this.optional<string>(table, field, "url", { type: "string" });
    if ((ca === undefined) === (url === undefined)) {
      this.fail(field, "give either ca (re-signed by the embedded CA) or url (fetched), not both");
    }
    let source: ManagedCrl["source"];
    if (ca !== undefined) {
      for (const key of ["issuer"]) {
        if (key in table) this.fail(`${field}.${key}`, "goes with url, not ca");
      }
      const days =
        this.optional<number>(table, field, "days", { type: "integer", min: 1, max: 3650 }) ?? 7;
      source = { kind: "local", ca, days };
    } else {
      if ("days" in table) this.fail(`${field}.days`, "goes with ca: a fetched CRL has its own");
      if (!/^https?:\/\/[^/]/i.test(url!)) {
        this.fail(`${field}.url`, `must be an http:// or https:// URL, got "${url}"`);
      }
      const issuer = this.required<string>(table, field, "issuer", { type: "path" });
      source = { kind: "url", url: url!, issuer };
    }
    return {
      name: this.optional<string>(table, field, "name", { type: "string" }) ?? file,
      file,
      source,
      renewBefore: table.renew_before === undefined
        ? renewBefore
        : this.renewBefore(table.renew_before, `${field}.renew_before`),
      field,
    };
  }

  /** `DNS:…`, `IP:…`, `URI:…`, `EMAIL:…`, or a bare IP address, URI or DNS name. */
  subjectAltName(text: string, field: string): string {
    const typed = /^(dns|ip|uri|email):/i.test(text)
      ? text
      : normalizeIp(text)
      ? `IP:${text}`
      : text.includes("://")
      ? `URI:${text}`
      : `DNS:${text}`;
    try {
      parseSubjectAltName(typed);
    } catch (e) {
      this.fail(field, (e as Error).message);
    }
    return typed;
  }

  keySource(raw: unknown, field: string): KeySource {
    if (raw === undefined) return { kind: "new" };
    const text = coerce({ type: "string" }, raw, this.origin(field)) as string;
    if (text === "new" || text === "reuse") return { kind: text };
    const hsm = /^hsm:(.+)$/.exec(text);
    if (hsm) return { kind: "hsm", label: hsm[1] };
    this.fail(field, `must be new, reuse or hsm:LABEL, got "${text}"`);
  }

  vault(
    table: Table | undefined,
    env: Record<string, string | undefined>,
  ): VaultSettings | undefined {
    const field = "renewal.vault";
    const t = table ?? {};
    this.only(t, field, [
      "address",
      "token",
      "role_id",
      "secret_id",
      "approle_mount",
      "namespace",
      "mount",
      "server_role",
      "client_role",
      "ca_file",
      "timeout",
    ]);
    const address = this.optional<string>(t, field, "address", { type: "string" }) ??
      (env.VAULT_ADDR || undefined);
    if (address === undefined) {
      if (table !== undefined) this.fail(`${field}.address`, "is required (or set VAULT_ADDR)");
      return undefined;
    }
    const get = (key: string) => this.optional<string>(t, field, key, { type: "string" });
    const roleId = get("role_id");
    const secretId = get("secret_id");
    const token = get("token");
    if ((roleId === undefined) !== (secretId === undefined)) {
      this.fail(
        `${field}.${roleId === undefined ? "role_id" : "secret_id"}`,
        "AppRole needs both role_id and secret_id",
      );
    }
    if (roleId !== undefined && token !== undefined) {
      this.fail(`${field}.token`, "give either token or role_id/secret_id, not both");
    }
    const auth: VaultAuth = roleId !== undefined
      ? {
        method: "approle",
        roleId: { ref: roleId, field: `${field}.role_id` },
        secretId: { ref: secretId!, field: `${field}.secret_id` },
        mount: get("approle_mount"),
      }
      : { method: "token", token: { ref: token ?? "env:VAULT_TOKEN", field: `${field}.token` } };
    return {
      address,
      auth,
      namespace: get("namespace") ?? (env.VAULT_NAMESPACE || undefined),
      mount: get("mount") ?? "pki",
      roles: {
        server: get("server_role") ?? DEFAULT_VAULT_ROLES.server,
        client: get("client_role") ?? DEFAULT_VAULT_ROLES.client,
      },
      caFile: this.optional<string>(t, field, "ca_file", { type: "path" }) ??
        (env.VAULT_CACERT || undefined),
      timeoutMs: this.optional<number>(t, field, "timeout", { type: "duration" }) ?? 60_000,
    };
  }

  hsm(table: Table | undefined): RenewalHsmSettings | undefined {
    if (table === undefined) return undefined;
    const field = "renewal.hsm";
    this.only(table, field, ["module", "token", "pin"]);
    return {
      module: this.required<string>(table, field, "module", { type: "path" }),
      token: this.required<string>(table, field, "token", { type: "string" }),
      pin: this.required<string>(table, field, "pin", { type: "string" }),
    };
  }
}
