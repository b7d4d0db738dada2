/**
 * The few numbers that must be the daemon's rather than each worker's: 8-byte slots of one file
 * in the supervisor's private directory, which every worker maps to the same page cache. A slot
 * several workers change (the session number, a backend's failures in a row) is changed under an
 * exclusive `flock`; a slot only one worker writes (its open connections per service) is written
 * without one, and a reader sums them. Microseconds of system calls per connection, next to a
 * handshake's milliseconds.
 */

/** Where each number is, for `services` services and `workers` workers. */
export class SlotLayout {
  constructor(readonly services: number, readonly workers: number) {}

  readonly sessions = 0;

  backendFailures(service: number): number {
    return 1 + service;
  }

  connections(worker: number, service: number): number {
    return 1 + this.services + worker * this.services + service;
  }

  get size(): number {
    return 1 + this.services + this.workers * this.services;
  }
}

/** The slot file, opened by one process. */
export class SharedSlots {
  readonly #file: Deno.FsFile;
  readonly #slot = new Uint8Array(8);

  constructor(readonly path: string, readonly layout: SlotLayout) {
    this.#file = Deno.openSync(path, { read: true, write: true });
  }

  /** Creates the file, every slot 0. */
  static async create(path: string, layout: SlotLayout): Promise<void> {
    await Deno.writeFile(path, new Uint8Array(layout.size * 8), { mode: 0o600 });
  }

  /** Adds `delta` to `slot` (at least 0), under the lock; returns the new value. */
  add(slot: number, delta: number): number {
    this.#file.lockSync(true);
    try {
      const next = Math.max(0, this.#read(slot, 1)[0] + delta);
      this.set(slot, next);
      return next;
    } finally {
      this.#file.unlockSync();
    }
  }

  /** Writes `slot`. */
  set(slot: number, value: number): void {
    new DataView(this.#slot.buffer).setBigUint64(0, BigInt(value));
    this.#file.seekSync(slot * 8, Deno.SeekMode.Start);
    this.#file.writeSync(this.#slot);
  }

  get(slot: number): number {
    return this.#read(slot, 1)[0];
  }

  /** The sum of `count` slots from `slot`. */
  sum(slot: number, count: number, stride = 1): number {
    const values = this.#read(slot, (count - 1) * stride + 1);
    let total = 0;
    for (let i = 0; i < values.length; i += stride) total += values[i];
    return total;
  }

  #read(slot: number, count: number): number[] {
    const bytes = new Uint8Array(count * 8);
    this.#file.seekSync(slot * 8, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) {
      const read = this.#file.readSync(bytes.subarray(done));
      if (!read) break;
      done += read;
    }
    const view = new DataView(bytes.buffer);
    return Array.from({ length: count }, (_, i) => Number(view.getBigUint64(i * 8)));
  }

  close(): void {
    this.#file.close();
  }
}
