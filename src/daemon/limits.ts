/**
 * Admission limits applied before any TLS work is done, so a flood costs the daemon a socket
 * accept and a close, not a handshake: connections open at once, and new connections per second
 * from one IP address (a token bucket per address, in a map whose size is bounded).
 */
import { deadline } from "../delay.ts";

/** Why a connection was refused; also the `reason` label of `qtls_handshake_failures_total`. */
export type RefusalReason = "max_connections" | "rate_limited" | "proxy_header";

/** Token buckets per IP address: `ratePerSecond` tokens per second, bursts up to `burst`. */
export class PerIpRateLimiter {
  readonly #buckets = new Map<string, { tokens: number; updatedMs: number }>();

  /**
   * @param ratePerSecond new connections per second per address; 0 disables the limit
   * @param maxTrackedAddresses beyond this many addresses, the least recently seen are forgotten
   *   (a forgotten address starts again with a full bucket, which errs on the side of admitting)
   * @param burst connections an address may open at once (the bucket's size)
   */
  constructor(
    readonly ratePerSecond: number,
    readonly maxTrackedAddresses = 65_536,
    readonly burst = ratePerSecond,
  ) {}

  /** Takes one token for `ip`; false when its bucket is empty. */
  admit(ip: string, nowMs = performance.now()): boolean {
    if (this.ratePerSecond <= 0) return true;
    const bucket = this.#buckets.get(ip);
    let tokens = this.burst;
    if (bucket) {
      tokens = Math.min(
        this.burst,
        bucket.tokens + ((nowMs - bucket.updatedMs) / 1000) * this.ratePerSecond,
      );
      // Re-inserting moves the address to the end: the map's order is least recently seen first.
      this.#buckets.delete(ip);
    } else if (this.#buckets.size >= this.maxTrackedAddresses) {
      this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    const admitted = tokens >= 1;
    this.#buckets.set(ip, { tokens: admitted ? tokens - 1 : tokens, updatedMs: nowMs });
    return admitted;
  }

  /** Addresses currently tracked (bounded by `maxTrackedAddresses`). */
  get size(): number {
    return this.#buckets.size;
  }
}

/**
 * Closes a connection that has been idle (no activity reported through `touch`) for `timeoutMs`.
 * One deadline per connection (delay.ts), re-armed lazily: activity only records a timestamp.
 */
export class IdleTimer implements Disposable {
  #lastActivityMs = performance.now();
  #deadline: Disposable | undefined;

  constructor(readonly timeoutMs: number, private readonly onIdle: () => void) {
    if (timeoutMs > 0) this.#arm(timeoutMs);
  }

  /** Records activity. */
  touch(): void {
    this.#lastActivityMs = performance.now();
  }

  #arm(delayMs: number): void {
    this.#deadline = deadline(delayMs, () => {
      const idleMs = performance.now() - this.#lastActivityMs;
      if (idleMs >= this.timeoutMs) {
        this.#deadline = undefined;
        this.onIdle();
      } else {
        this.#arm(this.timeoutMs - idleMs);
      }
    });
  }

  [Symbol.dispose](): void {
    this.#deadline?.[Symbol.dispose]();
    this.#deadline = undefined;
  }
}
