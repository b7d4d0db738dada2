/**
 * Shared by the daemon tests: a development PKI, a `qsign serve` subprocess whose JSON audit log
 * is collected event by event, and the OpenSSL 3.5 peer (Node 26) as a client.
 */
import "reflect-metadata";
import { buildClientConfig, openConnection } from "../../src/daemon/client.ts";
import { initPki, issueLeaf, PKI_FILES } from "../../src/pki/ca.ts";
import type { KeyAlgorithm } from "../../src/pki/keys.ts";
import type { TlsClientConfig } from "../../src/tls/config.ts";
import type { TlsConnection } from "../../src/tls/conn.ts";
import { DENO, PEER_NODE, QSIGN_RUN_FLAGS } from "../support/env.ts";

/** A stand-in for systemd's notify socket: collects every datagram on it until closed. */
export class NotifySocket implements Disposable {
  readonly messages: string[] = [];
  readonly #socket: Deno.DatagramConn;
  readonly #loop: Promise<void>;

  constructor(readonly path: string) {
    const socket = Deno.listenDatagram({ transport: "unixpacket", path });
    this.#socket = socket;
    this.#loop = (async () => {
      try {
        for (;;) {
          const [data] = await socket.receive();
          this.messages.push(new TextDecoder().decode(data));
        }
      } catch {
        // Closed.
      }
    })();
  }

  /** Waits (bounded) for a message satisfying `match`, at or after index `from`. */
  async next(match: (m: string) => boolean, from = 0, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.messages.findIndex((m, i) => i >= from && match(m));
      if (index >= 0) return index;
      if (Date.now() > deadline) {
        throw new Error(`no such message; got ${JSON.stringify(this.messages)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async close(): Promise<void> {
    this.#socket.close();
    await this.#loop;
  }

  [Symbol.dispose](): void {
    this.#socket.close();
  }
}

/** Paths of a fresh PKI made by `qsign pki init`. */
export interface Pki {
  dir: string;
  root: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** Makes a PKI under `dir` with `alg` keys throughout (default ML-DSA-65). */
export async function makePki(dir: string, alg?: KeyAlgorithm): Promise<Pki> {
  await initPki({ dir, alg, force: true });
  const path = (name: string) => `${dir}/${name}`;
  return {
    dir,
    root: path(PKI_FILES.rootCert),
    serverCert: path(PKI_FILES.serverCert),
    serverKey: path(PKI_FILES.serverKey),
    clientCert: path(PKI_FILES.clientCert),
    clientKey: path(PKI_FILES.clientKey),
  };
}

/** Issues another leaf and writes it as `<name>.crt` / `<name>.key` in the PKI directory. */
/**
 * Copies of the PKI's server certificate and key in DIR/live/, for tests that renew them in place
 * while a daemon serves them.
 */
export async function liveServerFiles(
  dir: string,
  pki: Pki,
): Promise<{ cert: string; key: string }> {
  const live = { cert: `${dir}/live/server.crt`, key: `${dir}/live/server.key` };
  await Deno.mkdir(`${dir}/live`);
  await Deno.copyFile(pki.serverCert, live.cert);
  await Deno.copyFile(pki.serverKey, live.key);
  return live;
}

export async function issue(
  pki: Pki,
  profile: "server" | "client",
  cn: string,
  name: string,
  options: { sans?: string[]; ttlSeconds?: number } = {},
): Promise<{ cert: string; key: string; serial: string; notAfter: Date }> {
  const leaf = await issueLeaf({ dir: pki.dir, profile, cn, ...options });
  const cert = `${pki.dir}/${name}.crt`;
  const key = `${pki.dir}/${name}.key`;
  await Deno.writeTextFile(cert, leaf.certPem);
  await Deno.writeTextFile(key, leaf.keyPem!, { mode: 0o600 });
  return { cert, key, serial: leaf.serial, notAfter: leaf.notAfter };
}

/** One line of the audit log. */
export type AuditEvent = { event: string; level: string; [field: string]: unknown };

/** A running `qsign serve`. */
export class Daemon implements AsyncDisposable {
  readonly events: AuditEvent[] = [];
  stderr = "";
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>;
  #waiters: (() => void)[] = [];
  #status: Deno.CommandStatus | undefined;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#pumps = Promise.all([this.#readEvents(), this.#readStderr()]).then(() => {});
  }

  /**
   * Starts `qsign serve ARGS` (or another command) and waits (bounded) until it logs `ready`
   * (or the event `readyEvent`).
   */
  static async start(
    args: string[],
    options: {
      env?: Record<string, string>;
      readyTimeoutMs?: number;
      command?: string;
      readyEvent?: string;
    } = {},
  ): Promise<Daemon> {
    const child = new Deno.Command(DENO, {
      args: [...QSIGN_RUN_FLAGS, options.command ?? "serve", ...args],
      env: { NO_COLOR: "1", ...options.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const daemon = new Daemon(child);
    try {
      const readyEvent = options.readyEvent ?? "ready";
      await daemon.waitFor((e) => e.event === readyEvent, options.readyTimeoutMs ?? 30_000);
    } catch (e) {
      await daemon.stop("SIGKILL");
      throw new Error(
        `qsign serve did not become ready: ${(e as Error).message}\n${daemon.stderr}`,
      );
    }
    return daemon;
  }

  /** The port `service` (default: the first listener) listens on, from its `listening` event. */
  port(service?: string): number {
    const event = this.events.find((e) =>
      e.event === "listening" && (service === undefined || e.service === service)
    );
    if (!event) throw new Error(`service ${service} is not listening`);
    return Number(String(event.address).split(":").pop());
  }

  /** The port of the HTTP endpoints. */
  get metricsPort(): number {
    const event = this.events.find((e) => e.event === "metrics_listening");
    if (!event) throw new Error("no metrics listener");
    return Number(String(event.address).split(":").pop());
  }

  /** The first event (already logged or still to come) matching `match`, within `timeoutMs`. */
  async waitFor(match: (e: AuditEvent) => boolean, timeoutMs = 15_000): Promise<AuditEvent> {
    const deadline = Date.now() + timeoutMs;
    for (let seen = 0;;) {
      const found = this.events.slice(seen).find(match);
      if (found) return found;
      seen = this.events.length;
      if (this.#status) {
        throw new Error(`daemon exited (${this.#status.code}); stderr:\n${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; events: ${JSON.stringify(this.events.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * Waits (bounded) until at least `count` events match `match` and returns every match: the
   * log arrives through a pipe, possibly after what a client saw on its socket.
   */
  async waitForCount(
    match: (e: AuditEvent) => boolean,
    count: number,
    timeoutMs = 15_000,
  ): Promise<AuditEvent[]> {
    await this.waitFor(() => this.events.filter(match).length >= count, timeoutMs);
    return this.events.filter(match);
  }

  /** Sends `signal`; `exited()` then waits for its effect. */
  signal(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Sends `signal` and waits (bounded) for the exit status. */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs?: number): Promise<Deno.CommandStatus> {
    if (!this.#status) {
      try {
        this.#child.kill(signal);
      } catch {
        // Already exited.
      }
    }
    return await this.exited(timeoutMs);
  }

  /**
   * Waits for the daemon to exit on its own (after a `signal()`), sending nothing: a second
   * signal would be a different request. Kills it and throws after `timeoutMs`.
   */
  async exited(timeoutMs = 30_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const status = await Promise.race([this.#child.status, timedOut]);
    clearTimeout(timer);
    if (status === "timeout") {
      this.#child.kill("SIGKILL");
      this.#status = await this.#child.status;
      await this.#pumps;
      throw new Error(`daemon did not exit within ${timeoutMs} ms; stderr:\n${this.stderr}`);
    }
    this.#status = status;
    await this.#pumps;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }

  async #readEvents(): Promise<void> {
    let buffered = "";
    for await (const text of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += text;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          this.events.push(JSON.parse(line));
        } catch {
          throw new Error(`stdout line is not JSON: ${line}`);
        }
      }
      const waiters = this.#waiters;
      this.#waiters = [];
      waiters.forEach((wake) => wake());
    }
    this.#child.status.then((s) => this.#status = s);
  }

  async #readStderr(): Promise<void> {
    for await (const text of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      this.stderr += text;
    }
  }
}

/**
 * The arguments of a daemon on loopback with ephemeral ports, serving `chain` (default: the
 * PKI's server certificate) and trusting the PKI's root for clients.
 */
export function serveArgs(
  pki: Pki,
  extra: string[] = [],
  chain: { cert: string; key: string } = { cert: pki.serverCert, key: pki.serverKey },
): string[] {
  return [
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--cert",
    chain.cert,
    "--key",
    chain.key,
    "--ca",
    pki.root,
    ...extra,
  ];
}

/**
 * The client options of `qsign connect` for a daemon serving the PKI's server chain: the PKI's
 * root as trust, `localhost` as the server name, and the client chain `client` (default: the
 * PKI's client certificate and key; without `key`, the caller adds `--hsm` options).
 */
export function clientArgs(
  pki: Pki,
  client: { cert: string; key?: string } = { cert: pki.clientCert, key: pki.clientKey },
): string[] {
  return [
    "--servername",
    "localhost",
    "--ca",
    pki.root,
    "--cert",
    client.cert,
    ...(client.key === undefined ? [] : ["--key", client.key]),
  ];
}

/**
 * Runs a Node 26 (OpenSSL 3.5) script with `args`; the script prints one JSON document on
 * stdout, which is returned. Throws with its stderr when it fails.
 */
export async function runPeer(
  script: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<unknown> {
  const child = new Deno.Command(PEER_NODE, {
    args: ["-e", script, "--", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(
        `peer failed (${out.code}): ${new TextDecoder().decode(out.stderr)}${stdout}`,
      );
    }
    return JSON.parse(stdout);
  } finally {
    clearTimeout(timer);
  }
}

/** One sample line of a Prometheus text exposition (a histogram's are `_bucket`/`_sum`/`_count`). */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * The sample lines of a text exposition (version 0.0.4). parse-prometheus-text-format, which
 * the observability test also runs over the whole text, drops the labels of labelled histograms.
 */
export function parseSamples(exposition: string): MetricSample[] {
  return exposition.split("\n").filter((line) => line && !line.startsWith("#")).map((line) => {
    const parsed = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    if (!parsed) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (parsed[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    return { name: parsed[1], labels, value: Number(parsed[3]) };
  });
}

/** The daemon's `/metrics`, as samples. */
export async function scrapeMetrics(daemon: Daemon): Promise<MetricSample[]> {
  return parseSamples((await httpGet(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).body);
}

/** The value of the first sample of `name` whose labels include `labels`; undefined if none. */
export function sampleValue(
  samples: MetricSample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value;
}

/** Fetches a URL and returns status and body text. */
export async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

/**
 * /proc/PID/status of a process, or undefined once it is gone. Deno lets only --allow-all read
 * /proc, and the tests run with the daemon's own narrower permissions, so `cat` reads it.
 */
export async function processStatus(pid: number): Promise<string | undefined> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return out.success ? new TextDecoder().decode(out.stdout) : undefined;
}

/** Which client chain the in-process qsign client presents. */
export interface QsignClientOptions {
  /** False: no client certificate (default true). */
  withCertificate?: boolean;
  /** Default: the PKI's client certificate and key. */
  cert?: string;
  key?: string;
}

/**
 * The in-process qsign client's configuration (src/daemon/client.ts) for the daemon on loopback
 * `port` serving the PKI's server chain; each call has a ticket cache of its own.
 */
export async function qsignClientConfig(
  pki: Pki,
  port: number,
  options: QsignClientOptions = {},
): Promise<TlsClientConfig> {
  const withCertificate = options.withCertificate ?? true;
  const origins = { cert: { field: "--cert" }, key: { field: "--key" }, ca: { field: "--ca" } };
  return await buildClientConfig({
    server: { hostname: "127.0.0.1", port },
    serverName: "localhost",
    credentials: withCertificate
      ? { cert: [options.cert ?? pki.clientCert], key: [options.key ?? pki.clientKey], origins }
      : { cert: [], key: [], origins },
    ca: [pki.root],
    crl: [],
    allowClassical: false,
    requirePqAuth: false,
    alpn: [],
    origins,
  });
}

/** An in-process qsign client connected to `port` (see `qsignClientConfig`). */
export async function qsignClient(
  pki: Pki,
  port: number,
  options: QsignClientOptions = {},
): Promise<TlsConnection> {
  const config = await qsignClientConfig(pki, port, options);
  return await openConnection({ hostname: "127.0.0.1", port }, config);
}

/** Sends one demo message on `tls` and returns the reply text. */
export async function exchange(tls: TlsConnection, message: string): Promise<string> {
  const writer = tls.writable.getWriter();
  const reader = tls.readable.getReader();
  try {
    await writer.write(new TextEncoder().encode(message));
    const { value } = await reader.read();
    return new TextDecoder().decode(value);
  } finally {
    writer.releaseLock();
    reader.releaseLock();
  }
}

/** The TLS options every peer script uses: mutual TLS with the given PEM files, PQ groups. */
const PEER_TLS_OPTIONS = `
const fs = require("fs");
const [port, ca, cert, key] = process.argv.slice(1, 5);
const tlsOptions = {
  host: "127.0.0.1", port: Number(port), servername: "localhost",
  ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key),
  ecdhCurve: "SecP384r1MLKEM1024:X25519MLKEM768", minVersion: "TLSv1.3",
};
`;

/**
 * OpenSSL 3.5 demo client: `port ca cert key message` → sends the message, prints
 * `{protocol, cipher, reply}` with the first reply.
 */
export const PEER_ECHO_CLIENT = PEER_TLS_OPTIONS + `
const message = process.argv[5];
const socket = require("tls").connect(tlsOptions, () => socket.write(message));
socket.once("data", (reply) => {
  console.log(JSON.stringify({
    protocol: socket.getProtocol(), cipher: socket.getCipher().name, reply: reply.toString("utf8"),
  }));
  socket.end();
});
socket.on("error", (e) => { console.error(e.message); process.exit(1); });
`;

/**
 * OpenSSL 3.5 HTTPS client: `port ca cert key path [uploadBytes]` → one request (a POST of
 * `uploadBytes` zero bytes when given), prints `{status, length, sha256, localPort, body?}`
 * (body only when short).
 */
export const PEER_HTTPS_CLIENT = PEER_TLS_OPTIONS + `
const [path, upload] = process.argv.slice(5, 7);
const agent = new (require("https").Agent)({ ...tlsOptions, keepAlive: false });
const request = require("https").request({
  ...tlsOptions, agent, path, method: upload ? "POST" : "GET",
  headers: upload ? { "content-length": upload } : {},
}, (response) => {
  const hash = require("crypto").createHash("sha256");
  let length = 0; const chunks = [];
  response.on("data", (d) => { hash.update(d); length += d.length; if (length < 4096) chunks.push(d); });
  response.on("end", () => console.log(JSON.stringify({
    status: response.statusCode, length, sha256: hash.digest("hex"), localPort: request.socket.localPort,
    body: length < 4096 ? Buffer.concat(chunks).toString("utf8") : undefined,
  })));
});
request.on("error", (e) => { console.error(e.message); process.exit(1); });
if (upload) request.end(Buffer.alloc(Number(upload)));
else request.end();
`;
