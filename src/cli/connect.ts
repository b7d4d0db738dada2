/**
 * `qsign connect`: the Q-TLS client. Interactive demo conversation (`메시지>` prompt, `quit`
 * ends), one message with `--send`, or with `--listen` a local plaintext → Q-TLS forwarder.
 * Parses the command line and hands over to src/daemon/client.ts.
 */
import { type Args, type CommandSpec, type OptionSpec, parseCommand } from "./args.ts";
import type { Address, Origin } from "../config/types.ts";
import { coerce, parseAddress, parseDurationMs } from "../config/values.ts";
import { isOsError, OsError, QsignError, UsageError } from "../errors.ts";
import { TlsError } from "../tls/alert.ts";
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import type { HsmOptions } from "../hsm/options.ts";
import { HSM_OPTIONS, hsmOptionsFromArgs } from "./hsm_options.ts";
import { setLogSink } from "../observe/log.ts";
import { CRL_CHECKS } from "../pki/verify.ts";
import { resolveSuites } from "../tls/cipher_suites.ts";
import { resolveSchemes } from "../tls/sigschemes.ts";
import { processSignals } from "../daemon/signals.ts";
import { closeTokens } from "../daemon/signer.ts";
import {
  buildClientConfig,
  type ClientSettings,
  CONVERSATION_TEXT,
  converse,
  describeHandshake,
  lines,
  openConnection,
  runForwarder,
} from "../daemon/client.ts";

/**
 * The client options `qsign connect` and `qsign bench` share: the client certificate, the trust
 * and revocation checks for the server's chain, and the handshake's policy.
 */
export const CLIENT_TLS_OPTIONS: Record<string, OptionSpec> = {
  cert: {
    type: "string",
    value: "FILE",
    help: "client certificate chain PEM (leaf first), or a PKCS#12 bundle",
  },
  key: {
    type: "string",
    value: "FILE",
    help: "client private key: PKCS#8, SEC1, PKCS#1, ENCRYPTED PRIVATE KEY or PKCS#12",
  },
  "key-passphrase": {
    type: "string",
    value: "REF",
    help: "passphrase of an encrypted --key or PKCS#12: file:///path, env:NAME, " +
      "credential:NAME or prompt",
  },
  ca: {
    type: "string",
    value: "FILE",
    multiple: true,
    help: "trusted roots for the server's chain",
  },
  crl: {
    type: "string",
    value: "FILE",
    multiple: true,
    help: "CRLs checked for the server's chain",
  },
  "crl-check": {
    type: "string",
    value: "available|leaf|chain",
    choices: CRL_CHECKS,
    help: "which certificates of the server's chain must have a CRL from their issuer " +
      "(chain: every one below the root, so the Root CA's CRL too)",
    default: "available",
  },
  servername: {
    type: "string",
    value: "NAME",
    help: "SNI and the name checked in the server certificate (default: the host)",
  },
  sigalgs: {
    type: "string",
    value: "SCHEME",
    multiple: true,
    help: "signature schemes to accept for the server's CertificateVerify, most preferred " +
      "first (e.g. mldsa65, ecdsa_secp384r1_sha384): the server signs with the first it can",
  },
  "cipher-suites": {
    type: "string",
    value: "SUITE",
    multiple: true,
    help: "TLS 1.3 cipher suites to offer, most preferred first (default: all three, the " +
      "fastest here first)",
  },
  "allow-classical": { type: "boolean", help: "also offer classical key exchange" },
  "no-middlebox-compat": {
    type: "boolean",
    help: "send an empty legacy_session_id and no change_cipher_spec (TLS 1.3 middlebox " +
      "compatibility mode, RFC 8446 D.4, is on by default)",
  },
  "require-pq-auth": {
    type: "boolean",
    help: "refuse a server whose chain or signature is not post-quantum",
  },
  alpn: { type: "string", value: "PROTO", multiple: true, help: "ALPN protocols to offer" },
  "handshake-timeout": {
    type: "string",
    value: "DURATION",
    help: "give up on a handshake not finished in this time",
    default: "10s",
  },
};

const SPEC: CommandSpec = {
  name: "connect",
  summary: "Connect to a Q-TLS server with a client certificate: an interactive conversation " +
    "(type messages at the 메시지> prompt, quit ends), one message with --send, or with --listen " +
    "a local plaintext listener whose connections are carried to the server over Q-TLS.",
  positionals: [{
    name: "HOST:PORT",
    help: "the Q-TLS server (or --host/--port, or --target)",
    optional: true,
  }],
  options: {
    host: { type: "string", value: "HOST", help: "server host (instead of HOST:PORT)" },
    port: {
      type: "string",
      value: "PORT",
      help: "server port (instead of HOST:PORT)",
      default: "8443",
    },
    target: {
      type: "string",
      value: "HOST:PORT",
      help: "the Q-TLS server the forwarder carries connections to",
    },
    listen: { type: "string", value: "ADDR:PORT", help: "forward: accept plaintext TCP here" },
    send: { type: "string", value: "MESSAGE", help: "send one message, print the reply, exit" },
    lang: {
      type: "string",
      value: "ko|en",
      help: "language of the conversation's own lines (prompt, connected, closed)",
      default: "ko",
      choices: ["ko", "en"],
    },
    groups: {
      type: "string",
      value: "GROUP",
      multiple: true,
      help: "key exchange groups, most preferred first",
    },
    ...CLIENT_TLS_OPTIONS,
    ...HSM_OPTIONS,
  },
};

/** This command's options, for completion and the man page. */
export const COMMAND_SPECS: CommandSpec[] = [SPEC];

/** Where a value came from: the flag `--name`. */
const origin = (name: string): Origin => ({ field: `--${name}` });

/**
 * The client settings from the `CLIENT_TLS_OPTIONS` of `args` (and the token key `hsm`, from
 * the `--hsm-*` options, when given), for the server `server`; groups are the caller's. Throws
 * `UsageError` for a missing or contradictory credential or trust option, or a `--sigalgs`
 * scheme the handshake cannot use.
 */
export function clientSettingsFromArgs(
  args: Args,
  server: Address,
  hsm?: HsmOptions,
): ClientSettings {
  const command = args.spec.name;
  const cert = args.string("cert");
  const key = args.string("key");
  if (
    hsm ? cert === undefined || key !== undefined : (cert === undefined) !== (key === undefined)
  ) {
    throw new UsageError(
      hsm
        ? `${command}: --hsm signs with the token's key: give --cert, not --key`
        : `${command}: --cert and --key go together`,
    );
  }
  const ca = args.list("ca", { splitCommas: true });
  if (ca.length === 0) {
    throw new UsageError(
      `${command}: --ca is required (the roots the server's chain must reach)`,
    );
  }
  const requirePqAuth = args.boolean("require-pq-auth");
  const signatureSchemes = args.has("sigalgs")
    ? args.list("sigalgs", { splitCommas: true })
    : undefined;
  try {
    resolveSchemes(signatureSchemes, requirePqAuth);
  } catch (e) {
    throw new UsageError(`${command}: --sigalgs: ${(e as Error).message}`);
  }
  const cipherSuites = args.has("cipher-suites")
    ? args.list("cipher-suites", { splitCommas: true })
    : undefined;
  try {
    resolveSuites(cipherSuites);
  } catch (e) {
    throw new UsageError(`${command}: --cipher-suites: ${(e as Error).message}`);
  }
  const origins = {
    cert: origin("cert"),
    key: origin("key"),
    key_passphrase: origin("key-passphrase"),
    ca: origin("ca"),
    crl: origin("crl"),
    "hsm.pin": origin("hsm-pin"),
    "hsm.composite_mldsa_key": origin("hsm-composite-mldsa-key"),
  };
  return {
    server,
    serverName: args.string("servername"),
    credentials: {
      cert: cert ? [cert] : [],
      key: key ? [key] : [],
      keyPassphrase: args.string("key-passphrase"),
      hsm,
      origins,
    },
    ca,
    crl: args.list("crl", { splitCommas: true }),
    crlCheck: args.choice("crl-check", CRL_CHECKS),
    signatureSchemes,
    cipherSuites,
    allowClassical: args.boolean("allow-classical"),
    middleboxCompat: !args.boolean("no-middlebox-compat"),
    requirePqAuth,
    alpn: args.list("alpn", { splitCommas: true }),
    handshakeTimeoutMs: parseDurationMs(
      args.string("handshake-timeout"),
      origin("handshake-timeout"),
    ),
    origins,
  };
}

/** Runs `qsign connect`. */
export async function run(argv: string[]): Promise<number> {
  const args = parseCommand(SPEC, argv);
  if (!args) return 0;
  const server = serverAddress(
    args.positionals[0] ?? args.string("target"),
    args.string("host"),
    args.string("port")!,
  );
  const settings = clientSettingsFromArgs(args, server, hsmOptionsFromArgs(args));
  try {
    return await connect(args, {
      ...settings,
      groups: args.has("groups") ? args.list("groups", { splitCommas: true }) : undefined,
    });
  } finally {
    await closeTokens();
  }
}

/** The conversation, one message, or the forwarder, once the configuration is assembled. */
async function connect(
  args: Args,
  settings: ClientSettings,
): Promise<number> {
  const { server } = settings;
  const config = await buildClientConfig(settings);
  const listen = args.string("listen");
  if (listen !== undefined) {
    const address = coerce(
      { type: "address", defaultHost: "127.0.0.1" },
      listen,
      origin("listen"),
    ) as Address;
    await runForwarder(address, server, config, processSignals()).catch((e) => {
      throw isOsError(e) ? new OsError(`connect: cannot listen on ${listen}`, e) : e;
    });
    return 0;
  }

  // The conversation owns stdout; connection events of the engine stay off it.
  setLogSink((line) => console.error(line));
  const lang = args.choice("lang", LANGUAGES) ?? "ko";
  // The server's first session ticket comes after it verified our certificate and Finished.
  const accepted = Promise.withResolvers<void>();
  const cache = config.sessionCache;
  const tls = await openConnection(server, {
    ...config,
    sessionCache: cache && {
      take: (key) => cache.take(key),
      put: (key, session) => {
        cache.put(key, session);
        accepted.resolve();
      },
    },
  });
  const send = args.string("send");
  const encoder = new TextEncoder();
  // Ctrl-C ends the conversation with close_notify rather than killing the process mid-record.
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort();
  const interactive = send === undefined;
  if (interactive) Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    const answered = await converse(
      tls,
      interactive ? lines(Deno.stdin.readable) : once(send),
      {
        lang,
        prompt: async () => {
          if (interactive) {
            await Deno.stdout.write(encoder.encode(CONVERSATION_TEXT[lang].prompt));
          }
        },
        print: (line) => console.log(line),
        endPromptLine: () => {
          if (interactive) console.log("");
        },
        signal: interrupt.signal,
        accepted: accepted.promise,
        announce: () => console.log(describeHandshake(tls, server, lang)),
      },
    );
    if (interrupt.signal.aborted) return 130;
    return interactive || answered === 1 ? 0 : 1;
  } catch (e) {
    throw e instanceof TlsError
      ? refusalInWords(e, settings, tls.info.signatureScheme !== undefined)
      : e;
  } finally {
    if (interactive) Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

const LANGUAGES = ["ko", "en"] as const;

/** What a client-certificate alert from the server means for the certificate we sent. */
const CERTIFICATE_ALERTS: Record<string, string> = {
  certificate_required: "the server requires a client certificate",
  bad_certificate: "the server found it bad (its chain or signature did not verify there)",
  unsupported_certificate: "the server does not accept its kind of key or signature",
  certificate_revoked: "the server found it revoked",
  certificate_expired: "the server found it expired or not yet valid",
  certificate_unknown: "the server could not accept it",
  unknown_ca: "the server does not trust the CA that issued it (its chain reaches none of the " +
    "server's roots)",
  access_denied: "the server's access policy (allow_cn, allow_ou, allow_dns, allow_uri) does " +
    "not admit it",
  insufficient_security: "the server requires stronger (post-quantum) authentication",
  handshake_failure: "the server refused the handshake",
};

/**
 * A server's alert about our client certificate, in words: which certificate (or that none was
 * given, or that ours was not sent because the server asked for signatures its key cannot
 * make), and why the server would not take it. Other TLS errors are kept as they are.
 */
function refusalInWords(e: TlsError, settings: ClientSettings, sent: boolean): QsignError {
  const why = CERTIFICATE_ALERTS[e.alert];
  if (e.sent || !why) return e;
  const server = e.peer ?? "the server";
  const cert = settings.credentials.cert[0];
  if (!cert) {
    return new QsignError(
      `${server}: ${why} and none was given: give one with --cert and --key (or --hsm) ` +
        `(alert ${e.alert})`,
      1,
      { cause: e },
    );
  }
  const leaf = leafSubject(cert);
  const which = `the client certificate ${cert}${leaf ? ` (${leaf.name}, ${leaf.key} key)` : ""}`;
  const classical = leaf !== undefined && !/ML-DSA/i.test(leaf.key);
  const pqHint = classical
    ? `; its ${leaf.key} key is classical, and a server with require_pq_auth takes only ` +
      "ML-DSA or composite ML-DSA client certificates (qsign pki issue --alg mldsa65)"
    : "";
  const message = sent
    ? `${server} did not accept ${which}: ${why} (alert ${e.alert})${
      e.alert === "access_denied" ? "" : pqHint
    }`
    : `${which} was not sent: the server asked for signature schemes its key cannot make, ` +
      `then refused the connection (alert ${e.alert})${pqHint}`;
  return new QsignError(message, 1, { cause: e });
}

/** The subject and key kind of the leaf in a certificate file, read for the refusal message. */
function leafSubject(path: string): { name: string; key: string } | undefined {
  try {
    const pem = Deno.readTextFileSync(path);
    const cert = new X509Certificate(pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25));
    const algorithm = cert.publicKey.algorithm as { name: string; namedCurve?: string };
    const key = algorithm.name === "ECDSA"
      ? `ECDSA ${algorithm.namedCurve}`
      : /^\d/.test(algorithm.name)
      ? "composite ML-DSA"
      : algorithm.name;
    return { name: cert.subject, key };
  } catch {
    return undefined;
  }
}

function serverAddress(
  positional: string | undefined,
  host: string | undefined,
  port: string,
): Address {
  if (positional !== undefined && host !== undefined) {
    throw new UsageError("connect: give the server either as HOST:PORT or with --host, not both");
  }
  const text = positional ??
    (host !== undefined ? `${host.includes(":") ? `[${host}]` : host}:${port}` : undefined);
  if (text === undefined) {
    throw new UsageError("connect: which server? give HOST:PORT (or --host and --port)");
  }
  return parseAddress(text, "127.0.0.1", {
    field: positional !== undefined ? "HOST:PORT" : "--host/--port",
  });
}

async function* once(message: string): AsyncIterable<string> {
  yield message;
}
