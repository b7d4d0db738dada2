/**
 * A worker process of `qsign serve --workers N`: the daemon of src/daemon/daemon.ts with the
 * supervisor in place of the outside world. It reads its start (ticket secret, ports) from
 * stdin, connects to the supervisor's channel, serves on the shared ports with `reusePort`,
 * answers the supervisor's requests and obeys only its stop requests: systemd's SIGTERM to the
 * whole cgroup, or a terminal's SIGINT to the whole process group, reach the supervisor too,
 * which drains every worker once.
 */
import { Buffer } from "node:buffer";
import type { DaemonConfig } from "../config/types.ts";
import { QsignError } from "../errors.ts";
import { audit, setLogContext } from "../observe/log.ts";
import { metrics } from "../observe/metrics.ts";
import { TicketKeys } from "../tls/tickets.ts";
import { runDaemon, type WorkerHandlers, type WorkerReload, type WorkerRole } from "./daemon.ts";
import { SessionCounter, type SharedServiceState } from "./service.ts";
import { SharedSlots, SlotLayout } from "./worker_shared.ts";
import { CHANNEL_FILES, LineChannel, WORKER_ENV, type WorkerInit } from "./worker_channel.ts";

/** Parses `QSIGN_WORKER`; undefined when this process is not a worker. */
export function workerMarker(
  env = Deno.env.toObject(),
): { index: number; directory: string } | undefined {
  const value = env[WORKER_ENV];
  if (value === undefined) return undefined;
  const match = /^(\d+):(\/.+)$/.exec(value);
  if (!match) {
    throw new QsignError(`${WORKER_ENV} is set by the supervisor only (got "${value}")`, 2);
  }
  return { index: Number(match[1]), directory: match[2] };
}

/** Runs this process as worker `index` of the supervisor whose channel is in `directory`. */
export async function runWorker(
  config: DaemonConfig,
  marker: { index: number; directory: string },
): Promise<number> {
  Deno.env.delete(WORKER_ENV);
  setLogContext({ worker: marker.index });
  const init = await readInit();
  const conn = await Deno.connect({
    transport: "unix",
    path: `${marker.directory}/${CHANNEL_FILES.socket}`,
  });
  const channel = new LineChannel(conn);
  await channel.send({ type: "hello", pid: Deno.pid });
  const role = new ChannelRole(marker.index, init, channel, marker.directory);
  // The worker owns none of these: the supervisor does.
  const own = { ...config, pidFile: undefined, metricsListen: undefined };
  return await runDaemon(own, { banner: () => {} }, role);
}

/** The first line of stdin, written by the supervisor. */
async function readInit(): Promise<WorkerInit> {
  let text = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    if (text.includes("\n")) break;
  }
  try {
    return JSON.parse(text.split("\n")[0]) as WorkerInit;
  } catch {
    throw new QsignError(`${WORKER_ENV}: no start message on stdin from the supervisor`, 2);
  }
}

/**
 * Session numbers shared by every worker, so that a number (in the echo reply and the audit
 * log) names one session of the daemon.
 */
class SharedSessionCounter extends SessionCounter {
  #last = 0;

  constructor(readonly slots: SharedSlots) {
    super();
  }

  override next(service: string): number {
    metrics.sessions.inc({ service });
    this.#last = this.slots.add(this.slots.layout.sessions, 1);
    return this.#last;
  }

  /** The last number this worker gave out. */
  override get count(): number {
    return this.#last;
  }
}

/** The worker's side of the channel, as runDaemon sees it. */
class ChannelRole implements WorkerRole {
  readonly tickets: TicketKeys;
  readonly listen;
  readonly metricsAddress;
  readonly announce: boolean;
  readonly sessions: SessionCounter;
  readonly #slots: SharedSlots;
  readonly #requested = Promise.withResolvers<Deno.Signal>();
  readonly #repeated = Promise.withResolvers<Deno.Signal>();
  #stops = 0;
  #handlers: WorkerHandlers | undefined;

  constructor(
    readonly index: number,
    init: WorkerInit,
    readonly channel: LineChannel,
    directory: string,
  ) {
    this.tickets = new TicketKeys(new Uint8Array(Buffer.from(init.ticketSecret, "base64")));
    this.listen = init.listen;
    this.metricsAddress = init.metricsAddress;
    this.announce = init.announce;
    const layout = new SlotLayout(init.slots.services, init.slots.workers);
    this.#slots = new SharedSlots(`${directory}/${CHANNEL_FILES.slots}`, layout);
    this.sessions = new SharedSessionCounter(this.#slots);
    void this.#listen();
  }

  get requested(): Promise<Deno.Signal> {
    return this.#requested.promise;
  }

  get repeated(): Promise<Deno.Signal> {
    return this.#repeated.promise;
  }

  shared(service: number): SharedServiceState {
    const slots = this.#slots;
    const { layout } = slots;
    const own = layout.connections(this.index, service);
    const failures = layout.backendFailures(service);
    slots.set(own, 0);
    return {
      publishConnections: (open) => slots.set(own, open),
      // Every worker's slot of this service: one apart by the number of services.
      totalConnections: () =>
        slots.sum(layout.connections(0, service), layout.workers, layout.services),
      backendFailures: {
        get: () => slots.get(failures),
        add: () => slots.add(failures, 1),
        reset: () => {
          if (slots.get(failures) !== 0) slots.add(failures, -Number.MAX_SAFE_INTEGER);
        },
      },
    };
  }

  serve(handlers: WorkerHandlers): void {
    this.#handlers = handlers;
  }

  async listening(addresses: { hostname: string; port: number }[], banner: string) {
    await this.channel.send({ type: "listening", pid: Deno.pid, addresses, banner });
  }

  async stopping(openConnections: number) {
    await this.channel.send({ type: "stopping", open_connections: openConnections });
  }

  async #listen(): Promise<void> {
    for await (const message of this.channel.messages()) {
      if (message.op === "stop") {
        const signal = message.signal as Deno.Signal;
        (++this.#stops === 1 ? this.#requested : this.#repeated).resolve(signal);
      } else {
        void this.#answer(message);
      }
    }
    // The supervisor is gone (killed, crashed): nobody holds the pid file, answers systemd or
    // would restart this worker, so it must not go on serving as an orphan.
    audit.error("supervisor_gone", { pid: Deno.pid });
    Deno.exit(1);
  }

  async #answer(message: Record<string, unknown>): Promise<void> {
    const { id } = message;
    const handlers = this.#handlers;
    try {
      if (!handlers) throw new Error("still starting");
      await this.channel.send({ id, result: await answer(handlers, message) });
    } catch (e) {
      await this.channel.send({ id, error: e instanceof Error ? e.message : String(e) });
    }
  }
}

/** The result of one request of the supervisor. */
function answer(handlers: WorkerHandlers, message: Record<string, unknown>): Promise<unknown> {
  switch (message.op) {
    case "metrics":
      return handlers.metrics();
    case "status":
      return handlers.status();
    case "readiness":
      return handlers.readiness();
    case "reload":
      return handlers.reload(message.reload as WorkerReload);
    default:
      throw new Error(`unknown request ${String(message.op)}`);
  }
}
