/**
 * The validated configuration of `qsign serve`: what the daemon runs, after flags, `QSIGN_*`
 * environment variables and the config file have been merged and checked.
 */
import type { HsmOptions } from "../hsm/options.ts";
import type { CrlCheck } from "../pki/verify.ts";

/** A TCP address to listen on or connect to. */
export interface Address {
  hostname: string;
  port: number;
}

/** Where a value came from, so a later problem (say, an unreadable file) can name it. */
export interface Origin {
  /** As the operator wrote it: `--cert`, `QSIGN_CERT` or `service[0].cert`. */
  field: string;
  /** The config file, when the value came from one. */
  file?: string;
}

export type LogLevel = "DEBUG" | "INFO" | "WARN" | "ERROR";
/** Audit-log lines as JSON objects (the default) or as text for a terminal. */
export type LogFormat = "json" | "text";
export type ServiceMode = "echo" | "proxy";
export type ClientAuthMode = "require" | "request" | "none";
export type ReplyLanguage = "ko" | "en";

/** Per-service protection against floods and stuck peers. */
export interface Limits {
  /** Connections open at once (handshaking or established); more are refused. */
  maxConnections: number;
  handshakeTimeoutMs: number;
  /** An established connection with no traffic either way for this long is closed. */
  idleTimeoutMs: number;
  /** New connections per second from one IP address; 0 means unlimited. */
  maxHandshakesPerIp: number;
  /**
   * How many connections one address may open at once before the rate applies (default:
   * maxHandshakesPerIp). Not a setting: a worker keeps the whole burst with its share of the rate.
   */
  handshakeBurstPerIp?: number;
}

/** A load balancer address range whose PROXY protocol headers are believed. */
export interface ProxySource {
  /** As configured, for messages. */
  text: string;
  /** Whether a connection's source address lies in the range. */
  contains(address: string): boolean;
}

/** Proxy mode: readiness follows the target's reachability. */
export interface BackendReadiness {
  /** Consecutive failed connects after which /readyz fails; 0 never fails it. */
  maxFailures: number;
  /** A periodic TCP connect to the target, counted like a connection's; 0 is off. */
  checkIntervalMs: number;
}

/**
 * A private key inside a PKCS#11 token, as `[service.hsm]` and the `--hsm-*` settings give it:
 * exactly the options the token is opened with; the PIN stays a secret reference until then.
 */
export type HsmSettings = HsmOptions;

/** Who may connect once their chain verifies; any match admits, all empty admits everyone. */
export interface AccessPolicySettings {
  cn: string[];
  ou: string[];
  dns: string[];
  uri: string[];
}

/** One Q-TLS listener and what it does with authenticated connections. */
export interface ServiceConfig {
  name: string;
  listen: Address;
  mode: ServiceMode;
  lang: ReplyLanguage;
  target?: Address;
  proxyProtocol: boolean;
  /** Load balancers whose connections start with a PROXY header (empty: none). */
  proxyFrom: ProxySource[];
  /** Certificate chain files (leaf first, then intermediates), one per key. */
  cert: string[];
  /** Private key files, paired with `cert` in order; empty when the key is in an HSM. */
  key: string[];
  /** Secret reference (src/secrets.ts) of encrypted keys' and PKCS#12 bundles' passphrase. */
  keyPassphrase?: string;
  hsm?: HsmSettings;
  ca: string[];
  crl: string[];
  /** Which certificates of a client chain need a CRL from their issuer among `crl`. */
  crlCheck: CrlCheck;
  clientAuth: ClientAuthMode;
  allow: AccessPolicySettings;
  /** Canonical group names, most preferred first; undefined means the engine's default. */
  groups?: string[];
  /** IANA suite names, most preferred first; undefined means the engine's default. */
  cipherSuites?: string[];
  allowClassical: boolean;
  requirePqAuth: boolean;
  alpn: string[];
  ticketKeyFile?: string;
  /** How long after a full handshake its session may be resumed. */
  resumptionMaxAgeMs: number;
  /** How long past a CRL's nextUpdate readiness still holds. */
  crlGraceMs: number;
  /** Proxy mode: when the target counts as down for readiness. */
  backend: BackendReadiness;
  limits: Limits;
  /** Where each setting came from, keyed by its config-file name (`cert`, `limits.idle_timeout`). */
  origins: Record<string, Origin>;
}

/** The whole daemon: process-wide settings and its services. */
export interface DaemonConfig {
  /** The config file, when one was given. */
  file?: string;
  /** Where `/metrics`, `/healthz`, `/readyz` and `/status` are served; undefined turns them off. */
  metricsListen?: Address;
  drainTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** Where the daemon writes its pid (for `qsign renew`'s SIGHUP); none when undefined. */
  pidFile?: string;
  /** Worker processes (see docs/workers.md); 1 runs the daemon in this process alone. */
  workers: number;
  services: ServiceConfig[];
}
