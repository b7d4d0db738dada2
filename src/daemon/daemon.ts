/**
 * The daemon's life: load every service's materials (refusing to start on any problem), bind
 * the listeners and the HTTP endpoints, write the pid file, tell systemd it is ready, reload on
 * SIGHUP or a changed certificate file, and on SIGTERM/SIGINT stop accepting, drain, remove the
 * pid file and exit 0 (a second SIGTERM/SIGINT ends the drain early, still with 0).
 */
import { lookup } from "node:dns/promises";
import { dirname } from "node:path";
import { isIP } from "node:net";
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import type { Address, DaemonConfig, Origin } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { describeCryptoProvider } from "../crypto/index.ts";
import { ConfigError, QsignError } from "../errors.ts";
import { createObservabilityApp, serveObservability } from "../observe/http.ts";
import { audit, setLogFormat, setLogLevel } from "../observe/log.ts";
import { metrics } from "../observe/metrics.ts";
import { registerReadinessCheck } from "../observe/readiness.ts";
import { SystemdNotifier } from "../observe/sd_notify.ts";
import { keyAlgorithmOfSpki } from "../pki/keys.ts";
import { TicketKeys } from "../tls/tickets.ts";
import type { BackendHealth } from "./backend_health.ts";
import { bannerText, statusDocument } from "./banner.ts";
import { writePidFile } from "./pid_file.ts";
import { MaterialsHolder, publishExpiries, watchMaterialFiles } from "./reload.ts";
import { type DrainCutoff, QtlsService, SessionCounter } from "./service.ts";
import { delay, processSignals } from "./signals.ts";
import { closeTokens } from "./signer.ts";

/** Loads every service's materials (opening HSM tokens, which `closeTokens` closes). */
async function loadAllMaterials(config: DaemonConfig): Promise<MaterialsHolder[]> {
  const holders: MaterialsHolder[] = [];
  for (const service of config.services) holders.push(await MaterialsHolder.load(service));
  return holders;
}

/**
 * `--check-config`: loads every certificate, key (HSM keys included), CA and CRL as the daemon
 * would, and returns what was loaded. Throws `ConfigError` (or `HsmError`) on any problem, an
 * expired CRL included (every client whose chain it covers would be refused); `warn` hears of a
 * CRL with less than a third of its validity left.
 */
export async function checkConfiguration(
  config: DaemonConfig,
  warn: (message: string) => void = (message) => console.error(`warning: ${message}`),
): Promise<MaterialsHolder[]> {
  let holders: MaterialsHolder[];
  try {
    holders = await loadAllMaterials(config);
  } finally {
    await closeTokens();
  }
  for (const holder of holders) {
    await checkResolvable(holder.service.listen, holder.service.origins.listen);
    checkSatisfiable(holder);
  }
  if (config.metricsListen) {
    await checkResolvable(config.metricsListen, { field: "metrics_listen", file: config.file });
  }
  if (config.pidFile) {
    const directory = dirname(config.pidFile);
    const exists = await Deno.stat(directory).then((s) => s.isDirectory, () => false);
    if (!exists) {
      warn(
        `pid_file: ${directory} does not exist, so qsign serve would stop at the pid file; ` +
          `under systemd RuntimeDirectory= creates it, elsewhere point pid_file at a directory ` +
          `that exists`,
      );
    }
  }
  const now = Date.now();
  for (const holder of holders) {
    const service = holder.service;
    for (const crl of holder.current.crlSummaries) {
      if (!crl.nextUpdate) continue;
      const next = Date.parse(crl.nextUpdate);
      const left = next - now;
      const renew = `run qsign renew (a [[crl]] table) or qsign pki crl to publish a new one`;
      if (left <= 0) {
        throw new ConfigError(
          service.origins.crl?.field ?? "crl",
          `${crl.file}: the CRL of ${crl.issuer} expired at ${crl.nextUpdate}; clients it ` +
            `covers are refused: ${renew}`,
          service.origins.crl?.file,
        );
      }
      if (left < (next - Date.parse(crl.thisUpdate)) / 3) {
        warn(
          `service ${service.name}: ${crl.file}: the CRL of ${crl.issuer} expires at ` +
            `${crl.nextUpdate} (in ${Math.round(left / 3_600_000)} h): ${renew}`,
        );
      }
    }
  }
  return holders;
}

/** Refuses a listen address that is neither an IP address nor a name this host resolves. */
async function checkResolvable(address: Address, origin: Origin | undefined): Promise<void> {
  if (address.hostname === "" || isIP(address.hostname)) return;
  try {
    await lookup(address.hostname);
  } catch (e) {
    const code = (e as { code?: string }).code ?? (e as Error).message;
    throw new ConfigError(
      origin?.field ?? "listen",
      `"${address.hostname}" is neither an IP address nor a name this host resolves (${code}); ` +
        `give an address such as 0.0.0.0:${address.port} or 127.0.0.1:${address.port}`,
      origin?.file,
    );
  }
}

/**
 * Refuses a service whose client requirements no certificate can meet: every client would be
 * refused, which `--check-config` should say rather than the first handshake.
 */
function checkSatisfiable(holder: MaterialsHolder): void {
  const service = holder.service;
  const materials = holder.current;
  if (service.clientAuth === "none") return;
  const fail = (key: string, problem: string): never => {
    const origin = service.origins[key];
    throw new ConfigError(origin?.field ?? key, problem, origin?.file);
  };
  const anchors = materials.trustAnchors.map((der) => new X509Certificate(der.slice()));
  if (service.requirePqAuth) {
    const postQuantum = anchors.some((cert) =>
      keyAlgorithmOfSpki(new Uint8Array(cert.publicKey.rawData))?.startsWith("mldsa")
    );
    if (!postQuantum) {
      fail(
        "require_pq_auth",
        `no client chain can meet it: every root in ca (${service.ca.join(", ")}) has a ` +
          `classical key, so what it signs is classical; trust an ML-DSA root (qsign pki init ` +
          `makes one) or set require_pq_auth = false`,
      );
    }
  }
  if (service.crlCheck !== "available" && materials.crls.length === 0) {
    fail(
      "crl_check",
      `"${service.crlCheck}" needs a CRL from each client chain's issuer and crl names none: ` +
        `every client would be refused; add the CRLs (qsign pki crl) or crl_check = "available"`,
    );
  }
  if (service.crlCheck === "chain") {
    const roots = new Set(anchors.map((cert) => cert.subject));
    if (!materials.crlSummaries.some((crl) => roots.has(crl.issuer))) {
      fail(
        "crl_check",
        `"chain" needs a CRL from the root too, and crl has none from ${
          [...roots].join(" or ")
        }: every client would be refused; add it (qsign pki crl --ca root) or crl_check = "leaf"`,
      );
    }
  }
}

/** What `runDaemon` prints besides the audit log. */
export interface DaemonOutput {
  banner(text: string): void;
}

/**
 * Runs until SIGTERM or SIGINT, then drains: until every connection has ended, the drain
 * timeout, or a second SIGTERM/SIGINT, whichever comes first; returns the exit status (0).
 * Throws on a startup problem. The signal handlers stay installed when it returns, so a signal
 * on the way to the process's exit does not end it with another status.
 */
export async function runDaemon(
  config: DaemonConfig,
  output: DaemonOutput = { banner: (text) => console.error(text) },
): Promise<number> {
  const signals = processSignals();
  setLogLevel(config.logLevel);
  setLogFormat(config.logFormat);
  const startedAt = new Date();
  const cleanup = new AsyncDisposableStack();
  cleanup.defer(closeTokens);
  const holders = await loadAllMaterials(config).catch(async (e) => {
    await cleanup.disposeAsync();
    throw e;
  });
  metrics.initialize(config.services.map((s) => s.name));
  for (const [primitive, backend] of Object.entries(describeCryptoProvider().primitives)) {
    metrics.cryptoBackend.set({ primitive, backend }, 1);
  }
  publishExpiries(holders);

  const sessions = new SessionCounter();
  const tickets = TicketKeys.random();
  const services = holders.map((h) => new QtlsService(h.service, h, sessions, tickets));
  try {
    const notifier = cleanup.use(SystemdNotifier.fromEnv());
    const reloads = new ReloadQueue(holders, notifier);
    cleanup.use(
      await watchMaterialFiles(config.services, (changed, paths) => {
        const changedHolders = holders.filter((h) => changed.includes(h.service));
        void reloads.run(changedHolders, `file change: ${paths.join(", ")}`, {
          onlyChanged: true,
        });
      }),
    );
    cleanup.use(signals.onHangup(() => void reloads.run(holders, "SIGHUP")));
    // Before anything listens, so a pid file that cannot be written stops the start before a
    // client or the banner sees the daemon; and only once SIGHUP is handled: `qsign renew` may
    // send it as soon as the pid is in the file.
    if (config.pidFile) cleanup.use(await writePidFile(config.pidFile));
    const addresses = listenAll(services, cleanup);
    let metricsAddress: Address | undefined;
    if (config.metricsListen) {
      const app = createObservabilityApp({
        metrics,
        status: () => statusDocument(services, startedAt),
      });
      const served = await serveObservability(config.metricsListen, app).catch((e) => {
        throw new QsignError(
          `metrics_listen: cannot serve on ${formatAddress(config.metricsListen!)}: ${e.message}`,
          1,
        );
      });
      metricsAddress = served.address;
      cleanup.defer(() => served.server.shutdown());
    }
    cleanup.use({
      [Symbol.dispose]: registerReadinessCheck("listeners", () => listenersReady(services)),
    });
    cleanup.use({
      [Symbol.dispose]: registerReadinessCheck("certificates", () => certificatesValid(holders)),
    });
    cleanup.use({
      [Symbol.dispose]: registerReadinessCheck("crls", () => crlsCurrent(holders)),
    });
    const backends = services.flatMap((s) => s.backend ? [s.backend] : []);
    cleanup.use({
      [Symbol.dispose]: registerReadinessCheck("backends", () => backendsUp(backends)),
    });
    for (const backend of backends) cleanup.use(backend).start();

    output.banner(bannerText(config, services, addresses, metricsAddress));
    audit.info("ready", { services: services.map((s) => s.config.name) });
    await notifier.ready(`serving ${services.length} service(s)`);

    const signal = await signals.requested;
    // Close the listeners before announcing the stop, so nothing connects after "stopping".
    await Promise.all(services.map((s) => s.stopAccepting()));
    audit.info("stopping", {
      signal,
      open_connections: services.reduce((n, s) => n + s.activeConnections, 0),
      drain_timeout_ms: config.drainTimeoutMs,
    });
    await notifier.stopping();
    await reloads.idle();
    using timeout = delay<DrainCutoff>(config.drainTimeoutMs, { event: "drain_timeout" });
    const cutoff = Promise.race([
      timeout,
      signals.repeated.then((again): DrainCutoff => ({
        event: "drain_interrupted",
        fields: { signal: again },
      })),
    ]);
    await Promise.all(services.map((s) => s.drain(cutoff)));
    audit.info("stopped", { sessions: sessions.count });
    return 0;
  } finally {
    await cleanup.disposeAsync();
  }
}

function listenAll(services: QtlsService[], cleanup: AsyncDisposableStack): Address[] {
  return services.map((service) => {
    try {
      const address = service.listen();
      cleanup.defer(() => service.stopAccepting());
      return address;
    } catch (e) {
      throw new QsignError(
        `service ${service.config.name}: cannot listen on ${
          formatAddress(service.config.listen)
        }: ${(e as Error).message}`,
        1,
      );
    }
  });
}

function listenersReady(services: readonly QtlsService[]) {
  const down = services.filter((s) => !s.listening).map((s) => s.config.name);
  return down.length ? { ok: false, reason: `not listening: ${down.join(", ")}` } : { ok: true };
}

function certificatesValid(holders: readonly MaterialsHolder[]) {
  const now = Date.now();
  const expired = holders.flatMap((h) =>
    h.current.summaries
      .filter((c) => Date.parse(c.notAfter) <= now || Date.parse(c.notBefore) > now)
      .map((c) => `${c.subject} (${c.file}) is outside ${c.notBefore} .. ${c.notAfter}`)
  );
  return expired.length ? { ok: false, reason: expired.join("; ") } : { ok: true };
}

/** Every proxy service's target answers (see BackendHealth). */
function backendsUp(backends: readonly BackendHealth[]) {
  const down = backends.map((b) => b.readiness()).filter((r) => !r.ok);
  return down.length ? { ok: false, reason: down.map((r) => r.reason).join("; ") } : { ok: true };
}

/** Every loaded CRL is before its nextUpdate, or within the service's `crl_grace` after it. */
function crlsCurrent(holders: readonly MaterialsHolder[]) {
  const now = Date.now();
  const expired = holders.flatMap((h) =>
    h.current.crlSummaries
      .filter((crl) => crl.nextUpdate && Date.parse(crl.nextUpdate) + h.service.crlGraceMs <= now)
      .map((crl) =>
        `service ${h.service.name}: CRL ${crl.file} (${crl.issuer}) expired at ${crl.nextUpdate}`
      )
  );
  return expired.length ? { ok: false, reason: expired.join("; ") } : { ok: true };
}

/**
 * Runs reloads one at a time (a SIGHUP during a file-triggered reload waits for it), wrapped
 * in RELOADING=1 / READY=1 for systemd. One request is one reload in `qtls_reloads_total`,
 * however many services it reloads (failed when any of them failed). A file-change request
 * reloads only the services whose files differ from what they last read: a renewal writes the
 * files and sends SIGHUP, and the watch that sees the same writes then has nothing left to do.
 */
class ReloadQueue {
  #tail: Promise<void> = Promise.resolve();

  constructor(
    readonly holders: readonly MaterialsHolder[],
    readonly notifier: SystemdNotifier,
  ) {}

  run(
    targets: readonly MaterialsHolder[],
    trigger: string,
    options: { onlyChanged?: boolean } = {},
  ): Promise<void> {
    this.#tail = this.#tail.then(async () => {
      const due = options.onlyChanged ? await changedOnly(targets) : targets;
      if (due.length === 0) {
        audit.debug("reload_unchanged", { trigger });
        return;
      }
      await this.notifier.reloading();
      let ok = true;
      for (const holder of due) ok = await holder.reload(trigger) && ok;
      metrics.reloads.inc({ result: ok ? "ok" : "failed" });
      publishExpiries(this.holders);
      await this.notifier.ready();
    });
    return this.#tail;
  }

  idle(): Promise<void> {
    return this.#tail;
  }
}

async function changedOnly(holders: readonly MaterialsHolder[]): Promise<MaterialsHolder[]> {
  const changed = await Promise.all(holders.map((h) => h.changedSinceLoad()));
  return holders.filter((_, i) => changed[i]);
}
