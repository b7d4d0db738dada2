/**
 * Every setting of `qsign serve`, once: its config-file key, flag, environment variable, type,
 * default and help line. The command-line parser, the environment reader, the config-file reader
 * and `--help` are all generated from this table, so the three sources cannot drift apart.
 */
import { LUNA_MODULE_PATH } from "../hsm/options.ts";
import { CRL_CHECKS } from "../pki/verify.ts";
import type { ValueKind } from "./values.ts";

/** One setting. */
export interface Setting {
  /** Name in the config file; dotted for nested tables (`limits.max_connections`). */
  key: string;
  /** `global` settings are process-wide; `service` settings belong to each `[[service]]`. */
  scope: "global" | "service";
  kind: ValueKind;
  /** The command-line flag, without dashes. */
  flag: string;
  /** The environment variable. */
  env: string;
  help: string;
  /** Placeholder for `--help`. */
  value?: string;
  /** The value when no source gives one, in the form a flag would give it. */
  default?: string | boolean;
}

/** The most worker processes `workers` accepts. */
export const MAX_WORKERS = 256;

/** One worker per CPU (within 1..MAX_WORKERS). */
function defaultWorkers(): number {
  return Math.min(MAX_WORKERS, Math.max(1, navigator.hardwareConcurrency || 1));
}

const PATHS: ValueKind = { type: "paths" };
const STRINGS: ValueKind = { type: "strings" };
const BOOLEAN: ValueKind = { type: "boolean" };

function setting(
  key: string,
  scope: Setting["scope"],
  kind: ValueKind,
  help: string,
  extra: Partial<Setting> = {},
): Setting {
  const flag = extra.flag ?? key.replace(/^limits\./, "").replace(/[._]/g, "-");
  return {
    key,
    scope,
    kind,
    help,
    flag,
    env: `QSIGN_${flag.replace(/-/g, "_").toUpperCase()}`,
    ...extra,
  };
}

/** Settings in the order `--help` and `--check-config` present them. */
export const SETTINGS: readonly Setting[] = [
  setting(
    "metrics_listen",
    "global",
    { type: "address", defaultHost: "127.0.0.1", optional: true },
    "address of the HTTP endpoints /metrics, /healthz, /readyz, /status (off disables)",
    { value: "ADDR:PORT", default: "127.0.0.1:9090" },
  ),
  setting(
    "drain_timeout",
    "global",
    { type: "duration" },
    "on SIGTERM/SIGINT, how long open connections may finish before they are closed",
    { value: "DURATION", default: "30s" },
  ),
  setting(
    "log_level",
    "global",
    { type: "choice", choices: ["DEBUG", "INFO", "WARN", "ERROR"] },
    "least severe audit-log level written to stdout",
    { value: "LEVEL", default: "INFO", env: "QTLS_LOG_LEVEL" },
  ),
  setting(
    "log_format",
    "global",
    { type: "choice", choices: ["json", "text"] },
    "audit-log lines as JSON objects (for journald, rsyslog and Filebeat) or as text for people",
    { value: "FORMAT", default: "json", env: "QTLS_LOG_FORMAT" },
  ),
  setting(
    "pid_file",
    "global",
    { type: "path" },
    "file the daemon writes its process id to (removed on exit); `qsign renew` reads the same " +
      "setting and sends SIGHUP to that process after renewing a certificate",
    { value: "FILE" },
  ),
  setting(
    "workers",
    "global",
    { type: "integer", min: 1, max: MAX_WORKERS },
    "processes accepting on the same listen addresses, under one supervisor that owns the pid " +
      "file, signals, sd_notify and the HTTP endpoints (default: the number of CPUs; 1: a " +
      "single process, no supervisor)",
    { value: "N", default: String(defaultWorkers()) },
  ),
  setting("name", "service", { type: "string" }, "service name in logs, metrics and /status", {
    value: "NAME",
  }),
  setting(
    "listen",
    "service",
    { type: "address", defaultHost: "0.0.0.0" },
    "Q-TLS listen address (a bare port listens on all IPv4 addresses)",
    { value: "ADDR:PORT", default: "0.0.0.0:8443" },
  ),
  setting(
    "mode",
    "service",
    { type: "choice", choices: ["echo", "proxy"] },
    "echo answers each message (the demo); proxy forwards to --target",
    { value: "MODE", default: "echo" },
  ),
  setting(
    "lang",
    "service",
    { type: "choice", choices: ["ko", "en"] },
    "language of the echo reply",
    { value: "LANG", default: "ko" },
  ),
  setting(
    "target",
    "service",
    { type: "address", defaultHost: "127.0.0.1" },
    "proxy mode: plaintext TCP backend each connection is forwarded to",
    { value: "HOST:PORT" },
  ),
  setting(
    "proxy_protocol",
    "service",
    BOOLEAN,
    "proxy mode: send a PROXY protocol v2 header (client address and identity) to the target",
  ),
  setting(
    "accept_proxy_protocol",
    "service",
    BOOLEAN,
    "read a PROXY protocol (v1 or v2) header before TLS from the load balancers in proxy_from; " +
      "the client address it carries is the one limits, logs, metrics and the target see",
  ),
  setting(
    "proxy_from",
    "service",
    STRINGS,
    "load balancers (CIDR, e.g. 10.0.0.0/24) that must send a PROXY header; other sources are " +
      "direct clients and their bytes are TLS from the first",
    { value: "CIDR" },
  ),
  setting("cert", "service", PATHS, "certificate chain PEM (leaf first); repeat for more chains", {
    value: "FILE",
  }),
  setting(
    "key",
    "service",
    PATHS,
    "private key for the --cert at the same position: PKCS#8, SEC1 (EC PRIVATE KEY), PKCS#1 " +
      "(RSA PRIVATE KEY), ENCRYPTED PRIVATE KEY, or a PKCS#12 bundle (then --cert may name it too)",
    { value: "FILE" },
  ),
  setting(
    "key_passphrase",
    "service",
    { type: "string" },
    "passphrase of encrypted keys and PKCS#12 bundles, as a reference: file:///path, env:NAME, " +
      "credential:NAME or prompt",
    { value: "REF" },
  ),
  setting("ca", "service", PATHS, "trusted root certificates for client chains", {
    value: "FILE",
  }),
  setting("crl", "service", PATHS, "certificate revocation lists checked for client chains", {
    value: "FILE",
  }),
  setting(
    "crl_check",
    "service",
    { type: "choice", choices: CRL_CHECKS },
    "which certificates of a client chain must have a CRL from their issuer: available (none " +
      "must; each is checked against the CRLs given), leaf, or chain (every one below the root, " +
      "so the Root CA's CRL is needed too)",
    { value: "available|leaf|chain", default: "available" },
  ),
  setting(
    "client_auth",
    "service",
    { type: "choice", choices: ["require", "request", "none"] },
    "whether clients must present a certificate (with request and an allow_* policy, a " +
      "client without one is refused: certificate_required)",
    { value: "MODE", default: "require" },
  ),
  setting("allow_cn", "service", STRINGS, "admit clients whose subject CN is this", {
    value: "CN",
  }),
  setting("allow_ou", "service", STRINGS, "admit clients whose subject OU is this", {
    value: "OU",
  }),
  setting("allow_dns", "service", STRINGS, "admit clients with this DNS subjectAltName", {
    value: "NAME",
  }),
  setting("allow_uri", "service", STRINGS, "admit clients with this URI subjectAltName", {
    value: "URI",
  }),
  setting(
    "groups",
    "service",
    STRINGS,
    "key exchange groups, most preferred first (default: SecP384r1MLKEM1024 and the other PQ groups)",
    { value: "GROUP" },
  ),
  setting(
    "cipher_suites",
    "service",
    STRINGS,
    "TLS 1.3 cipher suites, most preferred first (default: all three, the one this build " +
      "computes fastest first: AES-GCM through libcrypto, ChaCha20-Poly1305 otherwise)",
    { value: "SUITE" },
  ),
  setting(
    "allow_classical",
    "service",
    BOOLEAN,
    "also accept classical key exchange (x25519, secp256r1, secp384r1)",
  ),
  setting(
    "require_pq_auth",
    "service",
    BOOLEAN,
    "refuse peers whose certificate chain or CertificateVerify is not post-quantum",
  ),
  setting("alpn", "service", STRINGS, "ALPN protocols offered, most preferred first", {
    value: "PROTO",
  }),
  setting(
    "ticket_key_file",
    "service",
    { type: "path" },
    "session-ticket keys shared between nodes (default: random keys per process)",
    { value: "FILE" },
  ),
  setting(
    "resumption_max_age",
    "service",
    { type: "duration" },
    "how long after a full handshake its session may be resumed (each resumption re-checks " +
      "the client chain, CRLs and access policy; tickets issued then keep the original time)",
    { value: "DURATION", default: "24h" },
  ),
  setting(
    "crl_grace",
    "service",
    { type: "duration" },
    "how long past a CRL's nextUpdate /readyz still answers ready (clients whose chain needs " +
      "that CRL are refused from nextUpdate on; qsign renew refreshes CRLs before then)",
    { value: "DURATION", default: "0s" },
  ),
  setting(
    "backend_max_failures",
    "service",
    { type: "integer", min: 0, max: 1_000_000 },
    "proxy mode: /readyz fails after this many consecutive failed connects to the target, " +
      "until one succeeds (0: never)",
    { value: "N", default: "3" },
  ),
  setting(
    "backend_check_interval",
    "service",
    { type: "duration" },
    "proxy mode: also try a TCP connect to the target this often, counted as above (0s: off)",
    { value: "DURATION", default: "0s" },
  ),
  setting(
    "limits.max_connections",
    "service",
    { type: "integer", min: 1, max: 1_000_000 },
    "connections open at once; more are refused",
    { value: "N", default: "10000" },
  ),
  setting(
    "limits.handshake_timeout",
    "service",
    { type: "duration" },
    "a handshake not finished in this time is aborted",
    { value: "DURATION", default: "10s" },
  ),
  setting(
    "limits.idle_timeout",
    "service",
    { type: "duration" },
    "a connection without traffic for this long is closed",
    { value: "DURATION", default: "5m" },
  ),
  setting(
    "limits.max_handshakes_per_ip",
    "service",
    { type: "integer", min: 0, max: 1_000_000 },
    "new connections per second from one IP address (0: unlimited)",
    { value: "N", default: "100" },
  ),
  setting(
    "hsm.enabled",
    "service",
    BOOLEAN,
    "sign with a private key inside a PKCS#11 token (also on when hsm.module is set)",
    { flag: "hsm" },
  ),
  setting(
    "hsm.module",
    "service",
    { type: "path" },
    `PKCS#11 module holding the private key (default with --hsm: ${LUNA_MODULE_PATH})`,
    { value: "FILE" },
  ),
  setting("hsm.token_label", "service", { type: "string" }, "token by label (or hsm.slot)", {
    value: "LABEL",
  }),
  setting(
    "hsm.slot",
    "service",
    { type: "integer", min: 0, max: 2 ** 32 - 1 },
    "token by slot number (or hsm.token_label)",
    { value: "N" },
  ),
  setting("hsm.key_label", "service", { type: "string" }, "private key by CKA_LABEL", {
    value: "LABEL",
  }),
  setting("hsm.key_id", "service", { type: "string" }, "private key by CKA_ID (hex)", {
    value: "HEX",
  }),
  setting(
    "hsm.pin",
    "service",
    { type: "string" },
    "token PIN as a reference: file:///path, env:NAME, credential:NAME or prompt",
    { value: "REF" },
  ),
  setting(
    "hsm.composite_mldsa_key",
    "service",
    { type: "path" },
    "ML-DSA-65 half (PKCS#8) of a composite ML-DSA-65 + ECDSA-P384 certificate whose " +
      "ECDSA-P384 half is the token key (from qsign hsm keygen --composite-mldsa-key)",
    { value: "FILE" },
  ),
  setting(
    "hsm.sessions",
    "service",
    { type: "integer", min: 1, max: 1024 },
    "PKCS#11 sessions signing in parallel (Luna ToolkitPoolSize)",
    { value: "N" },
  ),
];

/** Looks a setting up by its config-file key. */
export function settingByKey(key: string): Setting | undefined {
  return SETTINGS.find((s) => s.key === key);
}
