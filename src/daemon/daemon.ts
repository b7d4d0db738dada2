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
import type { Address, DaemonConfig, Origin, ServiceConfig } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { describeCryptoProvider } from "../crypto/index.ts";
import { ConfigError, QsignError } from "../errors.ts";
import { createObservabilityApp, serveObservability } from "../observe/http.ts";
import { audit, setLogFormat, setLogLevel } from "../observe/log.ts";
import { metrics, type MetricsJson } from "../observe/metrics.ts";
import {
  checkReadiness,
  type ReadinessVerdict,
  registerReadinessCheck,
} from "../observe/readiness.ts";
import { SystemdNotifier } from "../observe/sd_notify.ts";
import { keyAlgorithmOfSpki } from "../pki/keys.ts";
import { TicketKeys } from "../tls/tickets.ts";
import type { BackendHealth } from "./backend_health.ts";
import { bannerText, statusDocument } from "./banner.ts";
import { writePidFile } from "./pid_file.ts";
import {
  logReload,
  MaterialsHolder,
  publishExpiries,
  type ReloadOutcome,
  watchMaterialFiles,
} from "./reload.ts";
import {
  type DrainCutoff,
  QtlsService,
  SessionCounter,
  type SharedServiceState,
} from "./service.ts";
import { delay } from "../delay.ts";
import { processSignals, type StopRequests } from "./signals.ts";
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
 * A worker process's part (see src/daemon/worker.ts): the supervisor owns the pid file, the
 * HTTP endpoints, systemd, the signals and the reload triggers, and asks the worker through its
 * channel; the worker reports its progress back instead of logging it as the daemon's.
 */
export interface WorkerRole extends StopRequests {
  readonly index: number;
  /** The supervisor's ticket keys, so a ticket resumes on any worker. */
  readonly tickets: TicketKeys;
  /** The ports worker 0 bound (for `listen` port 0), one per service; undefined for worker 0. */
  readonly listen?: readonly Address[];
  /** The supervisor's HTTP endpoints, for the banner. */
  readonly metricsAddress?: Address;
  /** Whether this worker logs `listening` (the first start of worker 0 does). */
  readonly announce: boolean;
  readonly sessions: SessionCounter;
  /** What service `index` (in config order) shares with the other workers. */
  shared(index: number): SharedServiceState;
  /** Answers the supervisor's requests with `handlers` from now on. */
  serve(handlers: WorkerHandlers): void;
  listening(addresses: Address[], banner: string): Promise<void>;
  stopping(openConnections: number): Promise<void>;
}

/** What a worker answers the supervisor. */
export interface WorkerHandlers {
  metrics(): Promise<MetricsJson>;
  status(): Promise<unknown>;
  readiness(): Promise<ReadinessVerdict>;
  /** Reloads the services named (all when undefined); only those whose files changed, if asked. */
  reload(request: WorkerReload): Promise<ReloadOutcome[]>;
}

/** A reload the supervisor fans out to its workers. */
export interface WorkerReload {
  trigger: string;
  services?: string[];
  onlyChanged?: boolean;
}

/**
 * Runs until SIGTERM or SIGINT, then drains: until every connection has ended, the drain
 * timeout, or a second SIGTERM/SIGINT, whichever comes first; returns the exit status (0).
 * Throws on a startup problem. The signal handlers stay installed when it returns, so a signal
 * on the way to the process's exit does not end it with another status. As a worker (`role`),
 * the stop requests, reloads and reports go through the supervisor's channel instead.
 */
export async function runDaemon(
  config: DaemonConfig,
  output: DaemonOutput = { banner: (text) => console.error(text) },
  role?: WorkerRole,
): Promise<number> {
  const signals = processSignals();
  const stops: StopRequests = role ?? signals;
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

  const sessions = role?.sessions ?? new SessionCounter();
  const tickets = role?.tickets ?? TicketKeys.random();
  const services = holders.map((h, i) =>
    new QtlsService(
      role ? workerService(h.service, i, role, config.workers) : h.service,
      h,
      sessions,
      tickets,
      role?.shared(i),
    )
  );
  try {
    const notifier = cleanup.use(SystemdNotifier.fromEnv());
    const reloads = new ReloadQueue(holders, role ? undefined : notifier);
    if (role) {
      role.serve({
        metrics: async () => await metrics.registry.getMetricsAsJSON() as MetricsJson,
        status: () => statusDocument(services, startedAt),
        readiness: checkReadiness,
        reload: ({ trigger, services: names, onlyChanged }) =>
          reloads.run(
            names ? holders.filter((h) => names.includes(h.service.name)) : holders,
            trigger,
            { onlyChanged },
          ),
      });
    } else {
      cleanup.use(
        await watchMaterialFiles(config.services, (changed, paths) => {
          const changedHolders = holders.filter((h) => changed.includes(h.service));
          void reloads.run(changedHolders, fileChangeTrigger(paths), { onlyChanged: true });
        }),
      );
      cleanup.use(signals.onHangup(() => void reloads.run(holders, "SIGHUP")));
    }
    // Before anything listens, so a pid file that cannot be written stops the start before a
    // client or the banner sees the daemon; and only once SIGHUP is handled: `qsign renew` may
    // send it as soon as the pid is in the file.
    if (config.pidFile) cleanup.use(await writePidFile(config.pidFile));
    const addresses = listenAll(services, cleanup, role);
    let metricsAddress: Address | undefined = role?.metricsAddress;
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
    // The periodic check is the daemon's: with workers, worker 0 runs it for all of them (the
    // failures in a row are shared).
    for (const backend of backends) {
      cleanup.use(backend);
      if (!role || role.index === 0) backend.start();
    }

    const banner = bannerText(config, services, addresses, metricsAddress);
    if (role) {
      await role.listening(addresses, banner);
    } else {
      output.banner(banner);
      audit.info("ready", { services: services.map((s) => s.config.name) });
      await notifier.ready(`serving ${services.length} service(s)`);
    }

    const signal = await stops.requested;
    // Close the listeners before announcing the stop, so nothing connects after "stopping".
    await Promise.all(services.map((s) => s.stopAccepting()));
    const open = services.reduce((n, s) => n + s.activeConnections, 0);
    if (role) {
      await role.stopping(open);
    } else {
      audit.info("stopping", {
        signal,
        open_connections: open,
        drain_timeout_ms: config.drainTimeoutMs,
      });
      await notifier.stopping();
    }
    await reloads.idle();
    using timeout = delay<DrainCutoff>(config.drainTimeoutMs, { event: "drain_timeout" });
    const cutoff = Promise.race([
      timeout,
      stops.repeated.then((again): DrainCutoff => ({
        event: "drain_interrupted",
        fields: { signal: again },
      })),
    ]);
    await Promise.all(services.map((s) => s.drain(cutoff)));
    if (!role) audit.info("stopped", { sessions: sessions.count });
    return 0;
  } finally {
    await cleanup.disposeAsync();
  }
}

/**
 * A service as one of `workers` workers runs it: on the port worker 0 bound, and with its share
 * of the per-address rate, since the kernel spreads one address's connections over the workers
 * (the share keeps at least one a second, so a slow client is never refused). Each worker keeps
 * the whole burst: the kernel's spread is uneven over a second, and a client at the configured
 * rate must not be refused by the worker its connections happened to favour. The sustained
 * rate daemon-wide is the configured one; a burst may reach it on each worker.
 */
function workerService(
  service: ServiceConfig,
  index: number,
  role: WorkerRole,
  workers: number,
): ServiceConfig {
  const perIp = service.limits.maxHandshakesPerIp;
  return {
    ...service,
    listen: role.listen?.[index] ?? service.listen,
    limits: {
      ...service.limits,
      maxHandshakesPerIp: perIp && Math.ceil(perIp / workers),
      handshakeBurstPerIp: perIp,
    },
  };
}

/** The trigger a file-change reload is logged with. */
export function fileChangeTrigger(paths: readonly string[]): string {
  return `file change: ${paths.join(", ")}`;
}

function listenAll(
  services: QtlsService[],
  cleanup: AsyncDisposableStack,
  role: WorkerRole | undefined,
): Address[] {
  return services.map((service) => {
    try {
      const address = service.listen({ reusePort: role !== undefined, announce: role?.announce });
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
 * Without a notifier (a worker), it neither logs nor counts: it returns the outcomes, and the
 * supervisor reports them once for every worker.
 */
class ReloadQueue {
  #tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly holders: readonly MaterialsHolder[],
    readonly notifier: SystemdNotifier | undefined,
  ) {}

  run(
    targets: readonly MaterialsHolder[],
    trigger: string,
    options: { onlyChanged?: boolean } = {},
  ): Promise<ReloadOutcome[]> {
    const run = this.#tail.then(async () => {
      const due = options.onlyChanged ? await changedOnly(targets) : targets;
      if (due.length === 0) {
        audit.debug("reload_unchanged", { trigger });
        return [];
      }
      await this.notifier?.reloading();
      const outcomes: ReloadOutcome[] = [];
      for (const holder of due) outcomes.push(await holder.reload(trigger));
      publishExpiries(this.holders);
      if (this.notifier) {
        for (const outcome of outcomes) logReload(outcome);
        metrics.reloads.inc({ result: outcomes.every((o) => o.ok) ? "ok" : "failed" });
        await this.notifier.ready();
      }
      return outcomes;
    });
    this.#tail = run;
    return run;
  }

  idle(): Promise<unknown> {
    return this.#tail;
  }
}

async function changedOnly(holders: readonly MaterialsHolder[]): Promise<MaterialsHolder[]> {
  const changed = await Promise.all(holders.map((h) => h.changedSinceLoad()));
  return holders.filter((_, i) => changed[i]);
}
