/**
 * `qsign serve` with `workers` > 1: this process starts N worker processes (src/daemon/worker.ts)
 * that accept on the same ports, and is the daemon to the outside: the pid file, the signals,
 * systemd's notifications, one `/metrics` (every worker's metrics aggregated), one `/status`
 * and `/readyz`, one reload result, one drain. A worker that exits unasked is logged, counted
 * and started again, later each time it dies young. Why processes, and the channel, in
 * docs/workers.md.
 */
import { Buffer } from "node:buffer";
import type { Address, DaemonConfig } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { QsignError } from "../errors.ts";
import { createObservabilityApp, serveObservability } from "../observe/http.ts";
import { audit, type LogFields, setLogFormat, setLogLevel } from "../observe/log.ts";
import { metrics, type MetricsJson } from "../observe/metrics.ts";
import type { ReadinessVerdict } from "../observe/readiness.ts";
import { SystemdNotifier } from "../observe/sd_notify.ts";
import { TicketKeys } from "../tls/tickets.ts";
import { VERSION } from "../version.ts";
import { type DaemonOutput, fileChangeTrigger, type WorkerReload } from "./daemon.ts";
import { writePidFile } from "./pid_file.ts";
import { logReload, type ReloadOutcome, watchMaterialFiles } from "./reload.ts";
import { delay } from "../delay.ts";
import { processSignals } from "./signals.ts";
import { CHANNEL_FILES, LineChannel, WORKER_ENV, type WorkerInit } from "./worker_channel.ts";
import { SharedSlots, SlotLayout } from "./worker_shared.ts";
import { qsignCommandLine } from "../self_command.ts";

/** A worker that lived shorter than this before dying counts as failing to start. */
const YOUNG_DEATH_MS = 10_000;
const MAX_RESTART_DELAY_MS = 30_000;
/** How long a reload may take in a worker (an HSM login included). */
const RELOAD_TIMEOUT_MS = 120_000;
const REQUEST_TIMEOUT_MS = 10_000;
/** After the drain timeout, how long workers get to exit before they are killed. */
const EXIT_GRACE_MS = 15_000;

/** What the supervisor needs to compare a changed configuration with the running one. */
export type ConfigReader = () => Promise<DaemonConfig>;

/**
 * Runs the daemon as a supervisor of `config.workers` processes; `argv` is the command line of
 * `qsign serve` the workers rerun. Returns the exit status: 0 after a drain, a worker's own when
 * one cannot start (it has said why on stderr).
 */
export async function runSupervisor(
  config: DaemonConfig,
  argv: readonly string[],
  rereadConfig: ConfigReader,
  output: DaemonOutput = { banner: (text) => console.error(text) },
): Promise<number> {
  const signals = processSignals();
  setLogLevel(config.logLevel);
  setLogFormat(config.logFormat);
  await using cleanup = new AsyncDisposableStack();
  const directory = await Deno.makeTempDir({ prefix: "qsign-workers-" });
  cleanup.defer(() => Deno.remove(directory, { recursive: true }).catch(() => {}));
  const layout = new SlotLayout(config.services.length, config.workers);
  await SharedSlots.create(`${directory}/${CHANNEL_FILES.slots}`, layout);
  const slots = new SharedSlots(`${directory}/${CHANNEL_FILES.slots}`, layout);
  cleanup.defer(() => slots.close());
  const listener = Deno.listen({ transport: "unix", path: `${directory}/${CHANNEL_FILES.socket}` });
  cleanup.defer(() => listener.close());
  const notifier = cleanup.use(SystemdNotifier.fromEnv());
  metrics.superviseWorkers(config.workers);
  for (const result of ["ok", "failed"]) metrics.reloads.inc({ result }, 0);

  const pool = new WorkerPool(
    config,
    directory,
    qsignCommandLine(["serve", ...argv]),
    listener,
    slots,
    notifier,
  );
  cleanup.defer(() => pool.kill());
  const reloads = new FanOutReload(pool, notifier, config, rereadConfig);
  cleanup.use(
    await watchMaterialFiles(config.services, (changed, paths) => {
      void reloads.run(fileChangeTrigger(paths), {
        services: changed.map((s) => s.name),
        onlyChanged: true,
      });
    }),
  );
  cleanup.use(signals.onHangup(() => void reloads.run("SIGHUP", {})));
  if (config.pidFile) cleanup.use(await writePidFile(config.pidFile));

  let metricsAddress: Address | undefined;
  if (config.metricsListen) {
    const startedAt = new Date();
    const app = createObservabilityApp({
      metrics: { exposition: async () => metrics.aggregatedExposition(await pool.metrics()) },
      status: () => pool.status(startedAt),
      readiness: () => pool.readiness(),
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

  const started = await pool.start(metricsAddress);
  if (typeof started === "number") return started;
  output.banner(
    `${started}\n  workers: ${config.workers} processes (supervisor pid ${Deno.pid})`,
  );
  audit.info("ready", { services: config.services.map((s) => s.name), workers: config.workers });
  await notifier.ready(
    `serving ${config.services.length} service(s) with ${config.workers} workers`,
  );

  const signal = await signals.requested;
  const open = await pool.stop(signal);
  audit.info("stopping", {
    signal,
    open_connections: open,
    drain_timeout_ms: config.drainTimeoutMs,
  });
  await notifier.stopping();
  void signals.repeated.then((again) => pool.cutShort(again));
  await reloads.idle();
  await pool.exited(config.drainTimeoutMs + EXIT_GRACE_MS);
  audit.info("stopped", { sessions: slots.get(layout.sessions) });
  return 0;
}

interface Listening {
  addresses: Address[];
  banner: string;
}

/** One worker process, from spawn to exit, and its channel once it has connected. */
class WorkerProcess {
  readonly child: Deno.ChildProcess;
  readonly startedAt = Date.now();
  readonly listening = Promise.withResolvers<Listening>();
  readonly stopping = Promise.withResolvers<number>();
  readonly exited: Promise<Deno.CommandStatus>;
  status: Deno.CommandStatus | undefined;
  isListening = false;
  /** Its metrics at the last scrape. */
  lastMetrics: MetricsJson | undefined;
  #channel: LineChannel | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, PromiseWithResolvers<unknown>>();

  constructor(
    readonly index: number,
    command: { command: string; args: string[] },
    directory: string,
    init: WorkerInit,
  ) {
    const env = Deno.env.toObject();
    // systemd hears from the supervisor only.
    for (const name of ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]) delete env[name];
    env[WORKER_ENV] = `${index}:${directory}`;
    this.child = new Deno.Command(command.command, {
      args: command.args,
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    this.exited = this.child.status.then((status) => {
      this.status = status;
      this.isListening = false;
      this.listening.reject(new Error("exited"));
      this.#closeChannel();
      return status;
    });
    this.listening.promise.catch(() => {});
    void this.#sendInit(init);
  }

  get pid(): number {
    return this.child.pid;
  }

  get alive(): boolean {
    return this.isListening && this.status === undefined;
  }

  async #sendInit(init: WorkerInit): Promise<void> {
    const writer = this.child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(`${JSON.stringify(init)}\n`));
      await writer.close();
    } catch {
      // It died before reading: its exit is handled where it is awaited.
    }
  }

  /** Takes the channel the worker opened; reads its answers and reports until it closes. */
  async attach(channel: LineChannel, messages: AsyncGenerator<Record<string, unknown>>) {
    this.#channel = channel;
    for await (const message of messages) {
      if (message.type === "listening") {
        this.isListening = this.status === undefined;
        this.listening.resolve(message as unknown as Listening);
      } else if (message.type === "stopping") {
        this.stopping.resolve(Number(message.open_connections));
      } else if (typeof message.id === "number") {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.error !== undefined) pending?.reject(new Error(String(message.error)));
        else pending?.resolve(message.result);
      }
    }
    this.#closeChannel();
  }

  /** Asks the worker; rejects when it does not answer in `timeoutMs` or goes away. */
  async request(op: string, fields: LogFields = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.#channel) throw new Error(`worker ${this.index} is starting`);
    const id = this.#nextId++;
    const pending = Promise.withResolvers<unknown>();
    this.#pending.set(id, pending);
    await this.#channel.send({ id, op, ...fields });
    using timeout = delay(timeoutMs, "timeout" as const);
    const answer = await Promise.race([pending.promise, timeout]);
    if (answer === "timeout") {
      this.#pending.delete(id);
      throw new Error(`worker ${this.index} did not answer ${op} within ${timeoutMs} ms`);
    }
    return answer;
  }

  /** Asks it to stop accepting and drain (a second time: to cut the drain short). */
  stop(signal: Deno.Signal): void {
    if (this.#channel) void this.#channel.send({ op: "stop", signal });
    // Not connected yet: it has no connection to drain.
    else if (this.status === undefined) this.kill();
  }

  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Exited already.
    }
  }

  #closeChannel(): void {
    this.#channel?.[Symbol.dispose]();
    for (const pending of this.#pending.values()) {
      pending.reject(new Error(`worker ${this.index} exited`));
    }
    this.#pending.clear();
  }
}

/** The N workers: starting them, restarting those that die, asking them, stopping them. */
class WorkerPool {
  readonly workers: WorkerProcess[] = [];
  readonly restarts: number[];
  /** The counters and histograms of workers that died, from their last scrape. */
  readonly #retired: MetricsJson[] = [];
  readonly #ticketSecret = Buffer.from(TicketKeys.random().secret).toString("base64");
  readonly #stopped = Promise.withResolvers<void>();
  #stopping = false;
  #listen: Address[] | undefined;
  #metricsAddress: Address | undefined;

  constructor(
    readonly config: DaemonConfig,
    readonly directory: string,
    readonly command: { command: string; args: string[] },
    listener: Deno.UnixListener,
    readonly slots: SharedSlots,
    readonly notifier: SystemdNotifier,
  ) {
    this.restarts = new Array(config.workers).fill(0);
    void this.#accept(listener);
  }

  /** Pairs each connection with the worker process whose pid it says it is. */
  async #accept(listener: Deno.UnixListener): Promise<void> {
    try {
      for await (const conn of listener) {
        const channel = new LineChannel(conn);
        const messages = channel.messages();
        void messages.next().then(({ value }) => {
          const worker = this.workers.find((w) => w.pid === value?.pid && w.status === undefined);
          if (worker) void worker.attach(channel, messages);
          else channel[Symbol.dispose]();
        });
      }
    } catch {
      // Closed at exit.
    }
  }

  #launch(index: number, announce: boolean): WorkerProcess {
    const worker = new WorkerProcess(index, this.command, this.directory, {
      ticketSecret: this.#ticketSecret,
      listen: this.#listen,
      metricsAddress: this.#metricsAddress,
      announce,
      slots: { services: this.config.services.length, workers: this.config.workers },
    });
    this.workers[index] = worker;
    void worker.listening.promise.then(() => this.#countAlive(), () => {});
    void worker.exited.then(() => {
      // Its connections died with it.
      for (let service = 0; service < this.slots.layout.services; service++) {
        this.slots.set(this.slots.layout.connections(index, service), 0);
      }
      this.#countAlive();
    });
    return worker;
  }

  #countAlive(): void {
    metrics.setWorkersAlive(this.workers.filter((w) => w.alive).length);
  }

  /**
   * Starts every worker at once when every port is given; otherwise worker 0 first, which
   * resolves port 0, then the others in parallel on its ports. Returns worker 0's banner, or the
   * exit status to end with when a worker could not start.
   */
  async start(metricsAddress: Address | undefined): Promise<string | number> {
    this.#metricsAddress = metricsAddress;
    const first = this.#launch(0, true);
    const portsGiven = this.config.services.every((s) => s.listen.port !== 0);
    const launchOthers = () =>
      Array.from({ length: this.config.workers - 1 }, (_, i) => this.#launch(i + 1, false));
    const early = portsGiven ? launchOthers() : undefined;
    const failed = async (worker: WorkerProcess) => {
      const status = await worker.exited;
      await this.#abortStart();
      if (status.signal) {
        console.error(`qsign: worker ${worker.index} ended by ${status.signal} while starting`);
      }
      return status.code || 1;
    };
    let listening: Listening;
    try {
      listening = await first.listening.promise;
    } catch {
      return await failed(first);
    }
    this.#listen = listening.addresses;
    const others = early ?? launchOthers();
    for (const worker of others) {
      try {
        await worker.listening.promise;
      } catch {
        return await failed(worker);
      }
    }
    for (const worker of this.workers) void this.#keep(worker.index);
    return listening.banner;
  }

  async #abortStart(): Promise<void> {
    this.#stopping = true;
    for (const worker of this.workers) worker.stop("SIGTERM");
    await Promise.all(this.workers.map((w) => w.exited));
  }

  /** Restarts worker `index` whenever it exits unasked, waiting longer each time it dies young. */
  async #keep(index: number): Promise<void> {
    let failures = 0;
    for (;;) {
      const worker = this.workers[index];
      const status = await worker.exited;
      if (this.#stopping) return;
      failures = Date.now() - worker.startedAt < YOUNG_DEATH_MS ? failures + 1 : 1;
      const delayMs = Math.min(MAX_RESTART_DELAY_MS, 500 * 2 ** (failures - 1));
      this.restarts[index]++;
      if (worker.lastMetrics) {
        this.#retired.push(
          // prom-client's types say an enum; at run time `type` is the exposition's word.
          worker.lastMetrics.filter((m) => ["counter", "histogram"].includes(String(m.type))),
        );
      }
      metrics.workerRestarted(index);
      audit.error("worker_exited", {
        worker: index,
        pid: worker.pid,
        code: status.code,
        signal: status.signal ?? undefined,
        restart_in_ms: delayMs,
      });
      await this.#tellSystemd(`worker ${index} exited, restarting in ${delayMs} ms`);
      using wait = delay(delayMs, false);
      if (await Promise.race([wait, this.#stopped.promise.then(() => true)])) return;
      const next = this.#launch(index, false);
      void next.listening.promise.then(async () => {
        audit.info("worker_restarted", { worker: index, pid: next.pid });
        await this.#tellSystemd(`worker ${index} restarted`);
      }, () => {});
    }
  }

  /** STATUS= for `systemctl status`: how many workers serve, and what just happened. */
  async #tellSystemd(event: string): Promise<void> {
    await this.notifier.notify(
      `STATUS=serving ${this.config.services.length} service(s) with ${this.alive.length} of ` +
        `${this.config.workers} workers (${event})`,
    );
  }

  /** The workers listening now. */
  get alive(): WorkerProcess[] {
    return this.workers.filter((w) => w.alive);
  }

  /**
   * Every live worker's metrics, and the counters of the workers that died as last seen, so
   * that a restart does not make the daemon's counters go back (only what a worker counted
   * after its last scrape is lost).
   */
  async metrics(): Promise<MetricsJson[]> {
    const answers = await Promise.all(this.alive.map(async (worker) => {
      try {
        worker.lastMetrics = await worker.request("metrics") as MetricsJson;
        return worker.lastMetrics;
      } catch {
        return undefined;
      }
    }));
    return [...answers.filter((a) => a !== undefined), ...this.#retired];
  }

  async readiness(): Promise<ReadinessVerdict> {
    const failures = new Set<string>();
    const alive = this.alive;
    if (alive.length < this.config.workers) {
      failures.add(`workers: ${alive.length} of ${this.config.workers} listening`);
    }
    for (const worker of alive) {
      const verdict = await worker.request("readiness").catch((e) => ({
        ok: false,
        failures: [`worker ${worker.index}: ${(e as Error).message}`],
      })) as ReadinessVerdict;
      // Every worker loads the same files: one line for a reason they share.
      for (const failure of verdict.failures) failures.add(failure);
    }
    return { ok: failures.size === 0, failures: [...failures] };
  }

  /**
   * One daemon's `/status`: the services as the workers describe them, their connections and
   * counters summed, and a section per worker.
   */
  async status(startedAt: Date): Promise<unknown> {
    const documents = await Promise.all(
      this.workers.map((w) =>
        w.alive ? w.request("status").then((d) => d as WorkerStatus, () => undefined) : undefined
      ),
    );
    const answered = documents.filter((d) => d !== undefined) as WorkerStatus[];
    const base = answered[0];
    const counters: Record<string, number> = {};
    for (const document of answered) {
      for (const [name, value] of Object.entries(document.counters)) {
        counters[name] = (counters[name] ?? 0) + value;
      }
    }
    const reloads = (await metrics.reloads.get()).values;
    for (const result of ["ok", "failed"]) {
      counters[`reloads_${result}`] = reloads.find((v) => v.labels.result === result)?.value ?? 0;
    }
    return {
      ...base,
      version: VERSION,
      pid: Deno.pid,
      started_at: startedAt.toISOString(),
      uptime_seconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
      services: base?.services.map((service, i) => ({
        ...service,
        listening: answered.every((d) => d.services[i]?.listening),
        active_connections: answered.reduce(
          (n, d) => n + (d.services[i]?.active_connections ?? 0),
          0,
        ),
      })) ?? [],
      counters,
      workers: this.workers.map((w, i) => ({
        index: w.index,
        pid: w.pid,
        alive: w.alive,
        restarts: this.restarts[i],
        started_at: new Date(w.startedAt).toISOString(),
        active_connections: documents[i]?.counters.connections_active ?? 0,
        sessions: documents[i]?.counters.sessions ?? 0,
        handshakes_ok: documents[i]?.counters.handshakes_ok ?? 0,
        handshakes_failed: documents[i]?.counters.handshakes_failed ?? 0,
      })),
    };
  }

  /** Asks every worker to stop accepting; resolves with the connections they still hold. */
  async stop(signal: Deno.Signal): Promise<number> {
    this.#stopping = true;
    this.#stopped.resolve();
    const running = this.workers.filter((w) => w.status === undefined);
    for (const worker of running) worker.stop(signal);
    const open = await Promise.all(
      running.map((w) => Promise.race([w.stopping.promise, w.exited.then(() => 0)])),
    );
    return open.reduce((a, b) => a + b, 0);
  }

  /** A repeated stop signal: every worker closes its connections now. */
  cutShort(signal: Deno.Signal): void {
    for (const worker of this.workers) if (worker.status === undefined) worker.stop(signal);
  }

  /** Waits for every worker to exit; kills those still there after `timeoutMs`. */
  async exited(timeoutMs: number): Promise<void> {
    using timeout = delay(timeoutMs, "timeout" as const);
    const all = Promise.all(this.workers.map((w) => w.exited));
    if (await Promise.race([all, timeout]) !== "timeout") return;
    for (const worker of this.workers.filter((w) => w.status === undefined)) {
      audit.error("worker_killed", { worker: worker.index, pid: worker.pid, after_ms: timeoutMs });
      worker.kill();
    }
    await all;
  }

  /** Kills what is left (the supervisor is failing or returning). */
  kill(): void {
    this.#stopping = true;
    this.#stopped.resolve();
    for (const worker of this.workers) if (worker.status === undefined) worker.kill();
  }
}

/** What a worker's `/status` holds that the supervisor merges. */
interface WorkerStatus {
  services: { listening: boolean; active_connections: number }[];
  counters: Record<string, number>;
}

/**
 * Reloads in every worker, one request at a time, wrapped in RELOADING=1 / READY=1: each worker
 * reloads (its own HSM sessions included) and returns what it did, and the supervisor logs one
 * `reload_ok` or `reload_failed` per service (the first failing worker's error, if any) and
 * counts one reload. On SIGHUP it also reads the configuration again, only to say when what
 * changed needs a restart: listen addresses and workers are bound at start.
 */
class FanOutReload {
  #tail: Promise<void> = Promise.resolve();

  constructor(
    readonly pool: WorkerPool,
    readonly notifier: SystemdNotifier,
    readonly config: DaemonConfig,
    readonly rereadConfig: ConfigReader,
  ) {}

  run(trigger: string, request: Omit<WorkerReload, "trigger">): Promise<void> {
    this.#tail = this.#tail.then(() => this.#reload({ trigger, ...request }));
    return this.#tail;
  }

  idle(): Promise<void> {
    return this.#tail;
  }

  async #reload(request: WorkerReload): Promise<void> {
    const workers = this.pool.alive;
    if (workers.length === 0) return;
    await this.notifier.reloading();
    if (request.trigger === "SIGHUP") await this.#checkRestartNeeded();
    const answers = await Promise.all(workers.map(async (worker) => {
      try {
        const outcomes = await worker.request(
          "reload",
          { reload: { ...request } },
          RELOAD_TIMEOUT_MS,
        );
        return { worker, outcomes: outcomes as ReloadOutcome[] };
      } catch (e) {
        return { worker, error: (e as Error).message };
      }
    }));
    const services = new Map<string, { outcome: ReloadOutcome; worker: number }[]>();
    let ok = true;
    for (const answer of answers) {
      if (answer.error !== undefined) {
        ok = false;
        audit.error("reload_failed", {
          trigger: request.trigger,
          worker: answer.worker.index,
          error: answer.error,
        });
        continue;
      }
      for (const outcome of answer.outcomes!) {
        const list = services.get(outcome.fields.service) ?? [];
        list.push({ outcome, worker: answer.worker.index });
        services.set(outcome.fields.service, list);
      }
    }
    if (ok && services.size === 0) {
      audit.debug("reload_unchanged", { trigger: request.trigger });
      await this.notifier.ready();
      return;
    }
    for (const results of services.values()) {
      const failed = results.filter((r) => !r.outcome.ok);
      if (failed.length === 0) {
        logReload(results[0].outcome, { workers: results.length });
        continue;
      }
      ok = false;
      logReload(failed[0].outcome, {
        worker: failed[0].worker,
        workers_failed: failed.length,
        workers: results.length,
      });
    }
    metrics.reloads.inc({ result: ok ? "ok" : "failed" });
    await this.notifier.ready();
  }

  async #checkRestartNeeded(): Promise<void> {
    let next: DaemonConfig;
    try {
      next = await this.rereadConfig();
    } catch (e) {
      audit.warn("config_unreadable", {
        error: (e as Error).message,
        note: "certificates are reloaded; the rest of the running configuration stays",
      });
      return;
    }
    const listen = (c: DaemonConfig) =>
      c.services.map((s) => `${s.name}=${formatAddress(s.listen)}`).join(", ");
    const changed: LogFields = {};
    if (listen(next) !== listen(this.config)) {
      changed.listen = { running: listen(this.config), configured: listen(next) };
    }
    if (next.workers !== this.config.workers) {
      changed.workers = { running: this.config.workers, configured: next.workers };
    }
    if (Object.keys(changed).length === 0) return;
    audit.warn("restart_required", {
      ...changed,
      note: "listen addresses and the number of workers change only with a restart of qsign serve",
    });
  }
}
