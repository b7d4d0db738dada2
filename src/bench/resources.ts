/**
 * CPU and memory of the benchmark itself (`process.cpuUsage`, and `Deno.memoryUsage` sampled
 * while the load runs) and of another local process, such as the server under test (Linux /proc).
 */
import { cpuUsage } from "node:process";

/** What a process used while a benchmark ran. */
export interface ResourceUsage {
  cpuUserMs: number;
  cpuSystemMs: number;
  /** (user + system) / wall time, in percent of one core: 200 means two cores busy. */
  cpuPercent: number;
  /** Highest resident set size seen (sampled for this process; the kernel's high-water mark for others). */
  rssPeakBytes: number;
  rssEndBytes: number;
  /** Highest V8 heap use seen; this process only. */
  heapUsedPeakBytes?: number;
}

const SAMPLE_INTERVAL_MS = 200;

/** Measures this process from construction until `stop()`. */
export class ResourceMeter {
  readonly #startCpu = cpuUsage();
  readonly #startMs = performance.now();
  #rssPeak = 0;
  #heapPeak = 0;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor() {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), SAMPLE_INTERVAL_MS);
  }

  #sample() {
    const memory = Deno.memoryUsage();
    this.#rssPeak = Math.max(this.#rssPeak, memory.rss);
    this.#heapPeak = Math.max(this.#heapPeak, memory.heapUsed);
    return memory;
  }

  /** Stops sampling and returns the usage since construction. */
  stop(): ResourceUsage {
    clearInterval(this.#timer);
    const end = this.#sample();
    const cpu = cpuUsage();
    const cpuUserMs = (cpu.user - this.#startCpu.user) / 1000;
    const cpuSystemMs = (cpu.system - this.#startCpu.system) / 1000;
    return {
      cpuUserMs,
      cpuSystemMs,
      cpuPercent: percentOf(cpuUserMs + cpuSystemMs, performance.now() - this.#startMs),
      rssPeakBytes: this.#rssPeak,
      rssEndBytes: end.rss,
      heapUsedPeakBytes: this.#heapPeak,
    };
  }
}

/** CPU time and memory of a process as Linux reports them. */
export interface ProcessSnapshot {
  atMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  rssBytes: number;
  /** VmHWM: the highest RSS over the process's life. */
  rssPeakBytes: number;
}

/**
 * Clock ticks per second of /proc/PID/stat times. Linux fixes USER_HZ at 100 on every
 * architecture Deno runs on, whatever the kernel's own tick rate.
 */
const USER_HZ = 100;

/** Reads /proc/PID/stat and /proc/PID/status. Throws when the process does not exist. */
export async function processSnapshot(pid: number): Promise<ProcessSnapshot> {
  const [stat, status] = await Promise.all([
    Deno.readTextFile(`/proc/${pid}/stat`),
    Deno.readTextFile(`/proc/${pid}/status`),
  ]);
  // The command name (field 2) is parenthesized and may hold spaces: count fields after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticksToMs = (field: string) => Number(field) * 1000 / USER_HZ;
  const kilobytes = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
  return {
    atMs: performance.now(),
    cpuUserMs: ticksToMs(fields[11]),
    cpuSystemMs: ticksToMs(fields[12]),
    rssBytes: kilobytes("VmRSS"),
    rssPeakBytes: kilobytes("VmHWM"),
  };
}

/** The usage of another process between two snapshots. */
export function usageBetween(before: ProcessSnapshot, after: ProcessSnapshot): ResourceUsage {
  const cpuUserMs = after.cpuUserMs - before.cpuUserMs;
  const cpuSystemMs = after.cpuSystemMs - before.cpuSystemMs;
  return {
    cpuUserMs,
    cpuSystemMs,
    cpuPercent: percentOf(cpuUserMs + cpuSystemMs, after.atMs - before.atMs),
    rssPeakBytes: after.rssPeakBytes,
    rssEndBytes: after.rssBytes,
  };
}

function percentOf(cpuMs: number, wallMs: number): number {
  return wallMs > 0 ? (cpuMs / wallMs) * 100 : 0;
}
