/**
 * Proxy mode's view of its target, for `/readyz`: a service is unfit to serve once
 * `backend_max_failures` connects to the target in a row have failed (those of client
 * connections, and of the optional periodic TCP check every `backend_check_interval`), and fit
 * again at the first connect that succeeds, as ghostunnel's status follows its backend.
 */
import type { Address, BackendReadiness } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { audit } from "../observe/log.ts";
import type { ReadinessResult } from "../observe/readiness.ts";

/** A periodic check's connect gives up after this long (or the interval, if shorter). */
const CHECK_TIMEOUT_MS = 5_000;

/** Connects to the target that failed in a row; shared by the worker processes of a daemon. */
export interface FailureCount {
  get(): number;
  add(): number;
  reset(): void;
}

/** One process's count. */
function localFailureCount(): FailureCount {
  let failures = 0;
  return { get: () => failures, add: () => ++failures, reset: () => void (failures = 0) };
}

export class BackendHealth implements Disposable {
  #lastError = "";
  #timer: ReturnType<typeof setInterval> | undefined;
  #checking = false;

  constructor(
    readonly service: string,
    readonly target: Address,
    readonly settings: BackendReadiness,
    readonly failures: FailureCount = localFailureCount(),
  ) {}

  /** Records the outcome of one connect to the target. */
  record(outcome: { ok: true } | { ok: false; error: string }): void {
    const wasReady = this.ready;
    if (outcome.ok) {
      this.failures.reset();
    } else {
      this.failures.add();
      this.#lastError = outcome.error;
    }
    if (wasReady !== this.ready) {
      const fields = { service: this.service, target: formatAddress(this.target) };
      if (this.ready) audit.info("backend_up", fields);
      else {audit.error("backend_down", {
          ...fields,
          failures: this.failures.get(),
          error: this.#lastError,
        });}
    }
  }

  get ready(): boolean {
    return this.settings.maxFailures === 0 || this.failures.get() < this.settings.maxFailures;
  }

  readiness(): ReadinessResult {
    return this.ready ? { ok: true } : {
      ok: false,
      reason: `service ${this.service}: target ${formatAddress(this.target)}: ` +
        `${this.failures.get()} connects in a row failed${
          this.#lastError ? ` (last: ${this.#lastError})` : ""
        }`,
    };
  }

  /** Starts the periodic TCP check, when one is configured. */
  start(): void {
    if (this.settings.checkIntervalMs === 0 || this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.#check(), this.settings.checkIntervalMs);
  }

  /** One TCP connect, closed at once; a check still running when the next is due is skipped. */
  async #check(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    const timeoutMs = Math.min(CHECK_TIMEOUT_MS, this.settings.checkIntervalMs);
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const conn = await Deno.connect({
        hostname: this.target.hostname,
        port: this.target.port,
        signal: timeout,
      });
      conn.close();
      this.record({ ok: true });
    } catch (e) {
      const error = timeout.aborted ? `no answer within ${timeoutMs} ms` : (e as Error).message;
      audit.debug("backend_check_failed", { service: this.service, error });
      this.record({ ok: false, error });
    } finally {
      this.#checking = false;
    }
  }

  [Symbol.dispose](): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
