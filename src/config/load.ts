/**
 * Loading the daemon configuration: command-line flags override `QSIGN_*` environment variables,
 * which override the config file (`--config`, TOML or YAML), which overrides the defaults.
 *
 * Flags and environment variables that configure a service apply to every `[[service]]` of the
 * file (or to the single implicit service when the file declares none), so `--allow-classical`
 * loosens them all and a lone `--listen` with a one-service file moves that service.
 */
import { ConfigError } from "../errors.ts";
import { resolveSuites } from "../tls/cipher_suites.ts";
import { GROUPS } from "../tls/groups.ts";
import { LUNA_MODULE_PATH } from "../hsm/options.ts";
import type { CrlCheck } from "../pki/verify.ts";
import { type ConfigFile, readConfigFile } from "./file.ts";
import { proxySources } from "./proxy_sources.ts";
import { type Setting, SETTINGS } from "./settings.ts";
import { coerce, formatAddress } from "./values.ts";
import type {
  Address,
  ClientAuthMode,
  DaemonConfig,
  HsmSettings,
  LogFormat,
  LogLevel,
  Origin,
  ReplyLanguage,
  ServiceConfig,
  ServiceMode,
} from "./types.ts";

/** The command-line values, as `Args` from src/cli/args.ts gives them. */
export interface FlagValues {
  has(name: string): boolean;
  string(name: string): string | undefined;
  list(name: string): string[];
  boolean(name: string): boolean;
}

/** No command-line values: for callers whose settings come from the environment and file only. */
export const NO_FLAGS: FlagValues = {
  has: () => false,
  string: () => undefined,
  list: () => [],
  boolean: () => false,
};

/** Where configuration comes from. */
export interface ConfigSources {
  flags: FlagValues;
  env: Record<string, string | undefined>;
}

/** A value picked from one source, before coercion. */
interface Picked {
  raw: unknown;
  origin: Origin;
}

/** Reads every source, merges them and validates the result. Throws `ConfigError`. */
export async function loadDaemonConfig(sources: ConfigSources): Promise<DaemonConfig> {
  const configPath = sources.flags.string("config") ?? nonEmpty(sources.env.QSIGN_CONFIG);
  const file = configPath === undefined ? undefined : await readConfigFile(configPath);
  const fileServices = file?.services.length ? file.services : [new Map()];

  const global = (key: string) => loadGlobalSetting(key, sources, file);

  const services = fileServices.map((values, index) => {
    const where = (key: string): Origin =>
      file ? { field: `service[${index}].${key}`, file: file.path } : {
        field: `--${SETTINGS.find((s) => s.key === key)!.flag}`,
      };
    const origins: Record<string, Origin> = {};
    const typed: Record<string, unknown> = {};
    for (const setting of SETTINGS.filter((s) => s.scope === "service")) {
      const picked = pickValue(setting, sources, values, where(setting.key));
      if (!picked) continue;
      typed[setting.key] = coerce(setting.kind, picked.raw, picked.origin);
      origins[setting.key] = picked.origin;
    }
    return buildService(typed, origins, where, fileServices.length === 1 ? "default" : index);
  });

  const config: DaemonConfig = {
    file: file?.path,
    metricsListen: global("metrics_listen") as Address | undefined,
    drainTimeoutMs: global("drain_timeout") as number,
    logLevel: global("log_level") as LogLevel,
    logFormat: global("log_format") as LogFormat,
    pidFile: global("pid_file") as string | undefined,
    workers: global("workers") as number,
    services,
  };
  checkAddressesAreDistinct(config);
  checkPromptsHaveOneProcess(config);
  return config;
}

/**
 * A `prompt` secret is read from the terminal, which only one process can ask on: every worker
 * loads the keys itself (its own PKCS#11 login), so with several the question would be asked
 * several times over one terminal.
 */
function checkPromptsHaveOneProcess(config: DaemonConfig): void {
  if (config.workers === 1) return;
  for (const service of config.services) {
    const key = service.keyPassphrase === "prompt"
      ? "key_passphrase"
      : service.hsm?.pin === "prompt"
      ? "hsm.pin"
      : undefined;
    if (!key) continue;
    const origin = service.origins[key];
    throw new ConfigError(
      origin?.field ?? key,
      `"prompt" asks on the terminal, which ${config.workers} worker processes cannot share: ` +
        `give the secret as file:///path, env:NAME or credential:NAME, or set workers = 1`,
      origin?.file,
    );
  }
}

/**
 * One process-wide setting, typed: from a flag, its `QSIGN_*` variable, the config file (already
 * read) or its default, in that order. Commands other than `serve` that share a setting call
 * this, so a key means the same everywhere (`qsign renew` reads `pid_file` here). Throws
 * `ConfigError` naming where a bad value came from.
 */
export function loadGlobalSetting(
  key: string,
  sources: ConfigSources,
  file: ConfigFile | undefined,
): unknown {
  const setting = SETTINGS.find((s) => s.key === key && s.scope === "global");
  if (!setting) throw new Error(`no process-wide setting ${key}`);
  const where = file ? { field: key, file: file.path } : { field: `--${setting.flag}` };
  const picked = pickValue(setting, sources, file?.global, where);
  return picked ? coerce(setting.kind, picked.raw, picked.origin) : undefined;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** Flag, then environment, then file, then the default (reported as `defaultOrigin`). */
function pickValue(
  setting: Setting,
  sources: ConfigSources,
  fileValues: ConfigFile["global"] | undefined,
  defaultOrigin: Origin,
): Picked | undefined {
  const { flags, env } = sources;
  if (flags.has(setting.flag)) {
    const raw = setting.kind.type === "boolean"
      ? flags.boolean(setting.flag)
      : setting.kind.type === "paths" || setting.kind.type === "strings"
      ? flags.list(setting.flag)
      : flags.string(setting.flag);
    return { raw, origin: { field: `--${setting.flag}` } };
  }
  const fromEnv = nonEmpty(env[setting.env]);
  if (fromEnv !== undefined) return { raw: fromEnv, origin: { field: setting.env } };
  const fromFile = fileValues?.get(setting.key);
  if (fromFile) return fromFile;
  if (setting.default !== undefined) {
    return { raw: setting.default, origin: defaultOrigin };
  }
  return undefined;
}

function buildService(
  typed: Record<string, unknown>,
  origins: Record<string, Origin>,
  missing: (key: string) => Origin,
  nameOrIndex: string | number,
): ServiceConfig {
  const fail = (key: string, problem: string): never => {
    const origin = origins[key] ?? missing(key);
    throw new ConfigError(origin.field, problem, origin.file);
  };
  const list = (key: string) => (typed[key] as string[] | undefined) ?? [];
  const mode = typed.mode as ServiceMode;

  const target = typed.target as Address | undefined;
  if (mode === "proxy" && !target) fail("target", "required with mode = proxy");
  if (mode === "echo" && target) fail("target", "only used with mode = proxy");
  if (mode === "echo" && typed.proxy_protocol) {
    fail("proxy_protocol", "only used with mode = proxy");
  }

  const cert = list("cert");
  const key = list("key");
  const hsm = hsmSettings(typed, fail);
  if (cert.length === 0) fail("cert", "required: the certificate chain this service presents");
  if (hsm) {
    if (key.length > 0) fail("key", "not used when the key is in an HSM");
    if (cert.length > 1) fail("cert", "only one certificate chain goes with an HSM key");
  } else if (key.length !== cert.length) {
    fail(
      key.length < cert.length ? "key" : "cert",
      `${cert.length} certificate chain(s) but ${key.length} key(s): give one key per chain`,
    );
  }

  const clientAuth = typed.client_auth as ClientAuthMode;
  const allow = {
    cn: list("allow_cn"),
    ou: list("allow_ou"),
    dns: list("allow_dns"),
    uri: list("allow_uri"),
  };
  const ca = list("ca");
  if (clientAuth !== "none" && ca.length === 0) {
    fail("ca", `required with client_auth = ${clientAuth}: the roots client chains must reach`);
  }
  if (clientAuth === "none") {
    for (const k of ["allow_cn", "allow_ou", "allow_dns", "allow_uri"]) {
      if (list(k).length) fail(k, "needs client certificates: client_auth is none");
    }
  }

  const cipherSuites = typed.cipher_suites === undefined ? undefined : list("cipher_suites");
  try {
    resolveSuites(cipherSuites);
  } catch (e) {
    fail("cipher_suites", (e as Error).message);
  }
  const allowClassical = typed.allow_classical === true;
  const groups = typed.groups === undefined
    ? undefined
    : list("groups").map((name) => canonicalGroup(name, allowClassical, (p) => fail("groups", p)));

  return {
    name: (typed.name as string | undefined) ??
      (typeof nameOrIndex === "number" ? `service-${nameOrIndex}` : nameOrIndex),
    listen: typed.listen as Address,
    mode,
    lang: typed.lang as ReplyLanguage,
    target,
    proxyProtocol: typed.proxy_protocol === true,
    proxyFrom: proxySources(typed.accept_proxy_protocol === true, list("proxy_from"), fail),
    cert,
    key,
    keyPassphrase: typed.key_passphrase as string | undefined,
    hsm,
    ca,
    crl: list("crl"),
    crlCheck: typed.crl_check as CrlCheck,
    clientAuth,
    allow,
    groups,
    cipherSuites,
    allowClassical,
    requirePqAuth: typed.require_pq_auth === true,
    alpn: list("alpn"),
    ticketKeyFile: typed.ticket_key_file as string | undefined,
    resumptionMaxAgeMs: typed.resumption_max_age as number,
    crlGraceMs: typed.crl_grace as number,
    backend: {
      maxFailures: typed.backend_max_failures as number,
      checkIntervalMs: typed.backend_check_interval as number,
    },
    limits: {
      maxConnections: typed["limits.max_connections"] as number,
      handshakeTimeoutMs: typed["limits.handshake_timeout"] as number,
      idleTimeoutMs: typed["limits.idle_timeout"] as number,
      maxHandshakesPerIp: typed["limits.max_handshakes_per_ip"] as number,
    },
    origins,
  };
}

function hsmSettings(
  typed: Record<string, unknown>,
  fail: (key: string, problem: string) => never,
): HsmSettings | undefined {
  const others = [
    "hsm.module",
    "hsm.token_label",
    "hsm.slot",
    "hsm.key_label",
    "hsm.key_id",
    "hsm.pin",
    "hsm.sessions",
    "hsm.composite_mldsa_key",
  ];
  if (typed["hsm.enabled"] !== true && typed["hsm.module"] === undefined) {
    const stray = others.find((k) => typed[k] !== undefined);
    if (stray) fail(stray, "needs the HSM on: hsm.module (or --hsm)");
    return undefined;
  }
  const token = typed["hsm.token_label"] as string | undefined;
  const slot = typed["hsm.slot"] as number | undefined;
  if ((token === undefined) === (slot === undefined)) {
    fail("hsm.token_label", "give exactly one of hsm.token_label and hsm.slot");
  }
  const keyLabel = typed["hsm.key_label"] as string | undefined;
  const keyId = (typed["hsm.key_id"] as string | undefined)?.replaceAll(":", "").toLowerCase();
  if ((keyLabel === undefined) === (keyId === undefined)) {
    fail("hsm.key_label", "give exactly one of hsm.key_label and hsm.key_id");
  }
  if (keyId !== undefined && !/^([0-9a-f]{2})+$/.test(keyId)) {
    fail("hsm.key_id", "must be hex bytes, e.g. 01a2");
  }
  return {
    module: (typed["hsm.module"] as string | undefined) ?? LUNA_MODULE_PATH,
    token,
    slot,
    keyLabel,
    keyId,
    pin: typed["hsm.pin"] as string | undefined,
    sessions: typed["hsm.sessions"] as number | undefined,
    compositeMldsaKey: typed["hsm.composite_mldsa_key"] as string | undefined,
  };
}

function canonicalGroup(
  name: string,
  allowClassical: boolean,
  fail: (problem: string) => never,
): string {
  const group = GROUPS.find((g) => g.name.toLowerCase() === name.toLowerCase());
  if (!group) fail(`unknown group "${name}"; known: ${GROUPS.map((g) => g.name).join(", ")}`);
  if (!group.pq && !allowClassical) {
    fail(`${group.name} is classical (not quantum-safe): also set allow_classical to use it`);
  }
  return group.name;
}

/** Two listeners clash on one port when their hosts are equal or either is a wildcard. */
function clashes(a: Address, b: Address): boolean {
  const wildcard = (host: string) => host === "0.0.0.0" || host === "::";
  return a.port !== 0 && a.port === b.port &&
    (a.hostname === b.hostname || wildcard(a.hostname) || wildcard(b.hostname));
}

function checkAddressesAreDistinct(config: DaemonConfig): void {
  const taken: { address: Address; by: string }[] = [];
  if (config.metricsListen) taken.push({ address: config.metricsListen, by: "metrics_listen" });
  const names = new Set<string>();
  for (const [i, service] of config.services.entries()) {
    const origin = service.origins.listen ?? { field: `service[${i}].listen`, file: config.file };
    const clash = taken.find((t) => clashes(t.address, service.listen));
    if (clash) {
      throw new ConfigError(
        origin.field,
        `${formatAddress(service.listen)} is already used by ${clash.by}`,
        origin.file,
      );
    }
    taken.push({ address: service.listen, by: `service "${service.name}"` });
    if (names.has(service.name)) {
      const nameOrigin = service.origins.name ?? origin;
      throw new ConfigError(
        nameOrigin.field,
        `service name "${service.name}" is used twice`,
        nameOrigin.file,
      );
    }
    names.add(service.name);
  }
}
