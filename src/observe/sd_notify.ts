/**
 * systemd's notification protocol (sd_notify(3)): datagrams such as `READY=1` sent to the unix
 * socket named by `$NOTIFY_SOCKET`, so a `Type=notify` unit knows when the listeners are up, when
 * a reload starts and ends, and when the daemon is stopping; plus watchdog keep-alives when the
 * unit sets `WatchdogSec=` (systemd passes `$WATCHDOG_USEC`). Needs `--unstable-net`.
 */
import { audit } from "./log.ts";

const encoder = new TextEncoder();

/** Talks to systemd when it is listening, and does nothing otherwise. */
export class SystemdNotifier implements Disposable {
  #socket: Deno.DatagramConn | undefined;
  #watchdog: ReturnType<typeof setInterval> | undefined;

  private constructor(readonly socketPath: string | undefined, readonly watchdogUsec?: number) {}

  /** Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`). */
  static fromEnv(env = Deno.env.toObject()): SystemdNotifier {
    const socket = env.NOTIFY_SOCKET;
    const watchdogUsec = Number(env.WATCHDOG_USEC);
    const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === Deno.pid;
    return new SystemdNotifier(
      socket ? (socket.startsWith("@") ? `\0${socket.slice(1)}` : socket) : undefined,
      forUs && watchdogUsec > 0 ? watchdogUsec : undefined,
    );
  }

  get enabled(): boolean {
    return this.socketPath !== undefined;
  }

  /** Sends one notification (newline-separated `KEY=VALUE` assignments); never throws. */
  async notify(state: string): Promise<void> {
    if (!this.socketPath) return;
    try {
      // Our end is bound in the abstract namespace: nothing to create on disk (and Deno's
      // permission checks refuse the empty path that would autobind).
      this.#socket ??= Deno.listenDatagram({
        transport: "unixpacket",
        path: `\0qsign-notify-${Deno.pid}-${crypto.randomUUID()}`,
      });
      await this.#socket.send(encoder.encode(state), {
        transport: "unixpacket",
        path: this.socketPath,
      });
    } catch (e) {
      audit.warn("sd_notify_failed", { state, error: (e as Error).message });
    }
  }

  /** The listeners are up; also starts the watchdog pings when systemd asked for them. */
  async ready(status?: string): Promise<void> {
    await this.notify(`READY=1${status ? `\nSTATUS=${status}` : ""}`);
    this.#startWatchdog();
  }

  /** A reload begins; `ready()` ends it. */
  async reloading(): Promise<void> {
    const monotonic = monotonicMicroseconds();
    await this.notify(`RELOADING=1${monotonic ? `\nMONOTONIC_USEC=${monotonic}` : ""}`);
  }

  async stopping(): Promise<void> {
    this.#stopWatchdog();
    await this.notify("STOPPING=1");
  }

  #startWatchdog(): void {
    if (!this.enabled || !this.watchdogUsec || this.#watchdog !== undefined) return;
    // Half the interval, as sd_watchdog_enabled(3) recommends.
    const intervalMs = Math.max(1, Math.floor(this.watchdogUsec / 2000));
    this.#watchdog = setInterval(() => void this.notify("WATCHDOG=1"), intervalMs);
    void this.notify("WATCHDOG=1");
  }

  #stopWatchdog(): void {
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
    this.#watchdog = undefined;
  }

  [Symbol.dispose](): void {
    this.#stopWatchdog();
    this.#socket?.close();
    this.#socket = undefined;
  }
}

/**
 * CLOCK_MONOTONIC in microseconds, which systemd compares reload notifications against. Deno's
 * clocks are relative to process start, so this asks libc; without FFI permission it is omitted.
 */
function monotonicMicroseconds(): bigint | undefined {
  let libc: Deno.DynamicLibrary<
    { clock_gettime: { parameters: ["i32", "buffer"]; result: "i32" } }
  >;
  try {
    libc = Deno.dlopen("libc.so.6", {
      clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
    });
  } catch {
    return undefined;
  }
  try {
    const timespec = new BigInt64Array(2);
    const CLOCK_MONOTONIC = 1;
    if (libc.symbols.clock_gettime(CLOCK_MONOTONIC, timespec) !== 0) return undefined;
    return timespec[0] * 1_000_000n + timespec[1] / 1000n;
  } finally {
    libc.close();
  }
}
