/**
 * The signals of a long-running qsign process (the daemon, the `connect --listen` forwarder),
 * handled from first use until the process exits. The listeners are never removed: without
 * them a SIGTERM or SIGHUP arriving after the drain, while the process is closing its last
 * resources, would end it by the default action (exit status 143 or 129) instead of the clean 0
 * that systemd and a repeated `systemctl stop` expect.
 */

/** Requests to stop: the first one starts a graceful stop, a repeated one cuts it short. */
export interface StopRequests {
  /** Settles with the first SIGTERM or SIGINT. */
  readonly requested: Promise<Deno.Signal>;
  /** Settles with the second: stop waiting for connections to finish. */
  readonly repeated: Promise<Deno.Signal>;
}

const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const;

/** SIGTERM, SIGINT and SIGHUP for the life of the process; get the one instance from `processSignals()`. */
export class ProcessSignals implements StopRequests {
  readonly #requested = Promise.withResolvers<Deno.Signal>();
  readonly #repeated = Promise.withResolvers<Deno.Signal>();
  #stops = 0;
  #onHangup: (() => void) | undefined;

  constructor() {
    for (const signal of STOP_SIGNALS) {
      Deno.addSignalListener(signal, () => {
        (++this.#stops === 1 ? this.#requested : this.#repeated).resolve(signal);
      });
    }
    Deno.addSignalListener("SIGHUP", () => this.#onHangup?.());
  }

  get requested(): Promise<Deno.Signal> {
    return this.#requested.promise;
  }

  get repeated(): Promise<Deno.Signal> {
    return this.#repeated.promise;
  }

  /** Calls `handler` on each SIGHUP until disposed; SIGHUP is ignored before and after. */
  onHangup(handler: () => void): Disposable {
    this.#onHangup = handler;
    return {
      [Symbol.dispose]: () => {
        if (this.#onHangup === handler) this.#onHangup = undefined;
      },
    };
  }
}

let instance: ProcessSignals | undefined;

/** The process's signal handling, installed on first call and kept until the process exits. */
export function processSignals(): ProcessSignals {
  instance ??= new ProcessSignals();
  return instance;
}
