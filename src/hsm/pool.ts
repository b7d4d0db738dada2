/**
 * A pool of logged-in PKCS#11 sessions on one token (the analogue of Luna's ToolkitPoolSize):
 * concurrent handshakes sign in parallel on different sessions, sessions are reused, and one
 * login serves them all (PKCS#11 login state belongs to the token and the process).
 *
 * When the token or module goes away (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, a dead session
 * handle, …) the pool turns disconnected, fails signs at once with an `HsmError` instead of
 * queueing them, tells listeners, and reconnects by itself with exponential backoff,
 * reinitialising the module, until the token is back. A wrong or locked PIN stops the retries:
 * retrying would run the token's PIN counter down.
 */
import {
  type Handle,
  HsmError,
  isConnectionLoss,
  isPinFailure,
  type Pkcs11Module,
  type TokenLocation,
  type TokenSelector,
} from "./module.ts";

/** Options of `SessionPool.open`. */
export interface SessionPoolOptions<T> {
  module: Pkcs11Module;
  token: TokenSelector;
  /** The user PIN itself (already read from its reference); undefined for tokens without login. */
  pin?: string;
  /** Sessions to keep open: the most signatures in progress at once. */
  size: number;
  /**
   * Runs on one session after each (re)connection, e.g. to find the key: object handles do not
   * survive a reinitialisation. Its result reaches every `use`; a failure fails the connection.
   */
  prepare: (session: Handle, token: TokenLocation) => T | Promise<T>;
  /** Backoff between reconnection attempts: first delay, doubled up to the maximum. */
  reconnectDelayMs?: { initial: number; max: number };
  /** How often an idle session is checked, so a lost token is noticed without traffic. */
  healthCheckIntervalMs?: number;
}

/** Dispatched as `change` whenever the pool connects or disconnects. */
export class HsmStatusEvent extends Event {
  constructor(readonly connected: boolean, readonly error?: HsmError) {
    super("change");
  }
}

/** A snapshot for status pages and logs; never contains the PIN. */
export interface PoolStatus {
  connected: boolean;
  module: string;
  token: string;
  size: number;
  busy: number;
  /** Why the pool is disconnected, when it is. */
  error?: string;
  /** True when reconnecting was given up (PIN failure) and only a restart with a fixed PIN helps. */
  gaveUp: boolean;
}

interface Connection<T> {
  token: TokenLocation;
  generation: number;
  prepared: T;
  idle: Handle[];
}

interface Waiter {
  resolve(session: Handle): void;
  reject(error: HsmError): void;
}

/** Sessions on one token, with automatic reconnection. Listen for `change` (`HsmStatusEvent`). */
export class SessionPool<T> extends EventTarget {
  readonly #options: SessionPoolOptions<T>;
  readonly #delays: { initial: number; max: number };
  #connection?: Connection<T>;
  #lastGeneration: number;
  #lastError?: HsmError;
  #gaveUp = false;
  #closed = false;
  #busy = 0;
  #waiters: Waiter[] = [];
  #drained: (() => void)[] = [];
  #retryTimer?: ReturnType<typeof setTimeout>;
  #retryDelay: number;
  #healthTimer?: ReturnType<typeof setTimeout>;

  private constructor(options: SessionPoolOptions<T>) {
    super();
    this.#options = options;
    this.#delays = options.reconnectDelayMs ?? { initial: 500, max: 30_000 };
    this.#retryDelay = this.#delays.initial;
    this.#lastGeneration = options.module.generation;
  }

  /** Opens the sessions and logs in. Throws `HsmError` if the token cannot be used now. */
  static async open<T>(options: SessionPoolOptions<T>): Promise<SessionPool<T>> {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new RangeError(`session pool size must be a positive integer, got ${options.size}`);
    }
    const pool = new SessionPool(options);
    pool.#connection = await pool.#connect();
    pool.#scheduleHealthCheck();
    return pool;
  }

  /** Whether signs can be attempted now. */
  get connected(): boolean {
    return this.#connection !== undefined;
  }

  /** The token as an operator would name it, e.g. `token "qsign" (module /usr/lib/…)`. */
  get description(): string {
    const t = this.#options.token;
    return `${
      "label" in t ? `token "${t.label}"` : `slot ${t.slot}`
    } (module ${this.#options.module.path})`;
  }

  status(): PoolStatus {
    const t = this.#options.token;
    return {
      connected: this.connected,
      module: this.#options.module.path,
      token: "label" in t ? t.label : `slot ${t.slot}`,
      size: this.#options.size,
      busy: this.#busy,
      error: this.connected ? undefined : this.#lastError?.message,
      gaveUp: this.#gaveUp,
    };
  }

  /**
   * Runs `fn` on a free session (waiting for one if all are busy) with the `prepare` result.
   * Throws `HsmError` at once while disconnected. A connection-loss error from `fn` disconnects
   * the pool and starts reconnecting; the error is passed on to the caller either way.
   */
  async use<R>(fn: (session: Handle, prepared: T) => Promise<R>): Promise<R> {
    const connection = this.#connection;
    if (!connection) throw this.#unavailable();
    this.#busy++;
    try {
      const session = await this.#acquire(connection);
      try {
        return await fn(session, connection.prepared);
      } catch (e) {
        if (isConnectionLoss(e) && this.#connection === connection) this.#lose(e as HsmError);
        throw e;
      } finally {
        this.#release(connection, session);
      }
    } finally {
      if (--this.#busy === 0) { for (const resolve of this.#drained.splice(0)) resolve(); }
    }
  }

  /** Stops reconnecting, waits for running signs, and closes every session. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#healthTimer);
    const closedError = new HsmError({
      operation: "sign",
      module: this.#options.module.path,
      problem: "the HSM session pool is closed",
    });
    for (const waiter of this.#waiters.splice(0)) waiter.reject(closedError);
    while (this.#busy > 0) await new Promise<void>((resolve) => this.#drained.push(resolve));
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection) this.#closeSessions(connection, connection.idle.splice(0));
  }

  async #connect(): Promise<Connection<T>> {
    const { module, pin, size, prepare } = this.#options;
    const generation = module.generation;
    this.#lastGeneration = generation;
    const token = module.findToken(this.#options.token);
    const sessions: Handle[] = [];
    try {
      for (let i = 0; i < size; i++) sessions.push(module.openSession(token, pin));
      const prepared = await prepare(sessions[0], token);
      return { token, generation, prepared, idle: sessions };
    } catch (e) {
      this.#closeSessions({ generation }, sessions);
      throw e;
    }
  }

  #acquire(connection: Connection<T>): Promise<Handle> {
    const session = connection.idle.pop();
    if (session) return Promise.resolve(session);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #release(connection: Connection<T>, session: Handle): void {
    if (this.#connection !== connection) {
      this.#closeSessions(connection, [session]);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(session);
    else connection.idle.push(session);
  }

  /**
   * Closes sessions of a connection, unless the module was reinitialised since: handle numbers
   * are reused, and closing a stale one could close somebody's new session.
   */
  #closeSessions(connection: { generation: number }, sessions: Handle[]): void {
    if (connection.generation !== this.#options.module.generation) return;
    for (const session of sessions) this.#options.module.closeSession(session);
  }

  #unavailable(): HsmError {
    const last = this.#lastError;
    return new HsmError({
      operation: "sign",
      module: this.#options.module.path,
      token: "label" in this.#options.token ? this.#options.token.label : undefined,
      code: last?.code,
      problem: this.#closed
        ? "the HSM session pool is closed"
        : `the HSM is disconnected${
          this.#gaveUp ? " and qsign stopped retrying" : ", reconnecting"
        }` +
          (last ? ` (${last.message})` : ""),
    }, { cause: last });
  }

  #lose(error: HsmError): void {
    const connection = this.#connection;
    if (!connection || this.#closed) return;
    this.#connection = undefined;
    this.#lastError = error;
    clearTimeout(this.#healthTimer);
    const unavailable = this.#unavailable();
    for (const waiter of this.#waiters.splice(0)) waiter.reject(unavailable);
    this.#closeSessions(connection, connection.idle.splice(0));
    this.#retryDelay = this.#delays.initial;
    this.#scheduleReconnect();
    this.dispatchEvent(new HsmStatusEvent(false, error));
  }

  #scheduleReconnect(): void {
    if (this.#closed) return;
    this.#retryTimer = setTimeout(() => this.#reconnect(), this.#retryDelay);
    Deno.unrefTimer(this.#retryTimer);
  }

  async #reconnect(): Promise<void> {
    try {
      await this.#options.module.reinitialize(this.#lastGeneration);
      const connection = await this.#connect();
      if (this.#closed) {
        this.#closeSessions(connection, connection.idle);
        return;
      }
      this.#connection = connection;
      this.#lastError = undefined;
      this.#scheduleHealthCheck();
      this.dispatchEvent(new HsmStatusEvent(true));
    } catch (e) {
      this.#lastError = e instanceof HsmError ? e : this.#options.module.error(
        { operation: "reconnect" },
        e,
      );
      if (isPinFailure(this.#lastError)) {
        this.#gaveUp = true;
        this.dispatchEvent(new HsmStatusEvent(false, this.#lastError));
        return;
      }
      this.#retryDelay = Math.min(this.#retryDelay * 2, this.#delays.max);
      this.#scheduleReconnect();
    }
  }

  #scheduleHealthCheck(): void {
    const interval = this.#options.healthCheckIntervalMs ?? 5_000;
    if (this.#closed || interval <= 0) return;
    this.#healthTimer = setTimeout(() => {
      const connection = this.#connection;
      if (!connection) return;
      const session = connection.idle.at(-1);
      try {
        if (session) this.#options.module.checkSession(connection.token, session);
      } catch (e) {
        if (isConnectionLoss(e)) return this.#lose(e as HsmError);
      }
      this.#scheduleHealthCheck();
    }, interval);
    Deno.unrefTimer(this.#healthTimer);
  }
}
