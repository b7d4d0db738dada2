/**
 * Deadlines and timed waits that can be raced and then cleared. A leaf module (no imports), so
 * that every room of the code base, the TLS engine included, can use it.
 *
 * A connection arms several deadlines (the handshake timeout, the idle timeout, the alert
 * deadline of its close), and nearly every one is cleared long before it falls due. In Deno 2.9
 * each setTimeout is a Node.js Timeout object over a runtime timer, 2–2.5 µs with its
 * clearTimeout. Deadlines of one length fall due in the order they were set, so they share one
 * list (a Set: insertion order, removal in O(1)) and one timer, armed for the list's head: setting
 * and clearing a deadline is a Set insertion and deletion. A deadline never fires early.
 *
 * A list that empties keeps its timer, unreferenced (it keeps the process alive no longer), until
 * it falls due: connections come and go one after another, and a list that dropped its timer
 * whenever it emptied would arm a new one for nearly every connection. The next deadline set
 * references the timer again; a timer that falls due before the head's time re-arms for it.
 */

/** One pending deadline; disposing it clears it. */
class Deadline implements Disposable {
  constructor(
    private readonly list: SameLength,
    readonly dueMs: number,
    readonly onExpiry: () => void,
  ) {}

  [Symbol.dispose](): void {
    this.list.remove(this);
  }
}

/** The pending deadlines of one length, earliest first, and the timer for the first. */
class SameLength {
  readonly #pending = new Set<Deadline>();
  /** Referenced (keeping the process alive) exactly while something is pending. */
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly lengthMs: number) {}

  add(onExpiry: () => void): Deadline {
    const deadline = new Deadline(this, performance.now() + this.lengthMs, onExpiry);
    this.#pending.add(deadline);
    if (this.#timer === undefined) this.#arm(this.lengthMs);
    // The first deadline of an emptied list: its lingering timer was unreferenced.
    else if (this.#pending.size === 1) Deno.refTimer(this.#timer);
    return deadline;
  }

  remove(deadline: Deadline): void {
    if (!this.#pending.delete(deadline) || this.#pending.size) return;
    if (this.#timer !== undefined) Deno.unrefTimer(this.#timer);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#expire(), ms);
  }

  #expire(): void {
    this.#timer = undefined;
    const nowMs = performance.now();
    const due: Deadline[] = [];
    for (const deadline of this.#pending) {
      if (deadline.dueMs > nowMs) break;
      due.push(deadline);
    }
    for (const deadline of due) this.#pending.delete(deadline);
    const next = this.#pending.values().next();
    if (next.done) this.#retire();
    else this.#arm(Math.max(0, next.value.dueMs - nowMs));
    for (const deadline of due) {
      try {
        deadline.onExpiry();
      } catch (error) {
        // Uncaught, as a throwing setTimeout callback's would be; the others still run.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #retire(): void {
    if (lists.get(this.lengthMs) === this) lists.delete(this.lengthMs);
  }
}

/** The lists with something pending or a timer still armed, by length. */
const lists = new Map<number, SameLength>();

/** Calls `onExpiry` after `ms` unless the returned deadline is disposed first. */
export function deadline(ms: number, onExpiry: () => void): Disposable {
  const lengthMs = Math.max(0, ms);
  let list = lists.get(lengthMs);
  if (!list) lists.set(lengthMs, list = new SameLength(lengthMs));
  return list.add(onExpiry);
}

/**
 * A promise that settles with `value` after `ms`, and the disposal that clears its deadline (so a
 * finished wait leaves nothing keeping the process alive).
 */
export function delay<T>(ms: number, value: T): Promise<T> & Disposable {
  let expiry: Disposable | undefined;
  const promise = new Promise<T>((resolve) => expiry = deadline(ms, () => resolve(value)));
  return Object.assign(promise, { [Symbol.dispose]: () => expiry![Symbol.dispose]() });
}
