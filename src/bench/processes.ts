/**
 * `qsign bench --workers N`: the load split between N client processes, so that a server with
 * several worker processes is not limited by one client event loop. Each process is this qsign
 * again, `qsign bench` with the same options, its share of `--handshakes` and `--concurrency`,
 * and PROCESS_MARKER first. Over its standard streams:
 *
 * - stdout, to the parent: `ready` once its configuration is loaded and its warm-up done, then
 *   its LoadMeasurement as one line of JSON;
 * - stdin, from the parent: `go` once every process is ready, so that the counted connections
 *   of all processes start together (end of input before it: do not start);
 * - stderr: passed on to the parent's stderr line by line, named by process; the last lines are
 *   kept to tell why a process failed.
 */
import { OsError, QsignError } from "../errors.ts";
import { qsignCommandLine } from "../self_command.ts";
import { lines } from "../daemon/client.ts";
import type { BenchFigures, LoadMeasurement, ProcessReport } from "./report.ts";

/** The first argument of a client process's `qsign bench`; never typed by an operator. */
export const PROCESS_MARKER = "--as-client-process";

const READY = "ready";
const GO = "go";
/** Lines of a failed process's stderr that its report keeps. */
const STDERR_TAIL_LINES = 10;

/** One process's part of the load. */
export interface Share {
  handshakes: number;
  concurrency: number;
}

/** `total` in `parts` whole shares that differ by at most one, the larger ones first. */
export function splitEvenly(total: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0),
  );
}

/** What a client process did: its measurement, or why there is none. */
export type ProcessOutcome = Omit<ProcessReport, keyof BenchFigures> & {
  measurement?: LoadMeasurement;
};

/** A started client process, driven through the protocol above. */
class ClientProcess {
  readonly #child: Deno.ChildProcess;
  readonly #stdout: AsyncIterator<string>;
  readonly #stderrTail: string[] = [];
  readonly #stderrPump: Promise<void>;
  /** Whether it said it is ready (false: it ended or wrote something else first). */
  readonly ready: Promise<boolean>;

  constructor(readonly process: number, argv: readonly string[], readonly share: Share) {
    const { command, args } = qsignCommandLine([
      "bench",
      PROCESS_MARKER,
      ...argv,
      // Given last, these win over the operator's own.
      ...["--workers", "1"],
      ...["--handshakes", `${share.handshakes}`, "--concurrency", `${share.concurrency}`],
    ]);
    try {
      this.#child = new Deno.Command(command, {
        args,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new OsError(`starting client process ${process} (${command})`, e);
    }
    this.#stdout = lines(this.#child.stdout)[Symbol.asyncIterator]();
    this.ready = this.#stdout.next().then((line) => !line.done && line.value === READY);
    this.#stderrPump = this.#pumpStderr();
  }

  async #pumpStderr(): Promise<void> {
    for await (const line of lines(this.#child.stderr)) {
      console.error(`bench process ${this.process}: ${line}`);
      this.#stderrTail.push(line);
      if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
    }
  }

  /** Lets it start its counted connections, or (not ready) closes its input so that it ends. */
  async release(go: boolean): Promise<void> {
    const writer = this.#child.stdin.getWriter();
    try {
      if (go) await writer.write(new TextEncoder().encode(`${GO}\n`));
      await writer.close();
    } catch {
      // It has already ended; finish() tells how.
    }
  }

  /** Waits for its measurement and its exit. */
  async finish(): Promise<ProcessOutcome> {
    let measurement: LoadMeasurement | undefined;
    for (let line = await this.#stdout.next(); !line.done; line = await this.#stdout.next()) {
      try {
        measurement ??= JSON.parse(line.value);
      } catch {
        // Not a measurement: the process is reported as failed, with its stderr.
      }
    }
    const { code } = await this.#child.status;
    await this.#stderrPump;
    const failed = code !== 0 || measurement === undefined;
    return {
      process: this.process,
      pid: this.#child.pid,
      share: this.share,
      exitCode: code,
      measurement: failed ? undefined : measurement,
      stderrTail: failed ? this.#stderrTail.join("\n") : undefined,
    };
  }
}

/**
 * Runs `qsign bench ARGV` as one client process per share, started together, and returns what
 * each did, in order. A process that fails before it is ready is reported; the others still run.
 */
export async function runClientProcesses(
  argv: readonly string[],
  shares: readonly Share[],
): Promise<ProcessOutcome[]> {
  const children = shares.map((share, i) => new ClientProcess(i + 1, argv, share));
  const ready = await Promise.all(children.map((child) => child.ready));
  await Promise.all(children.map((child, i) => child.release(ready[i])));
  return await Promise.all(children.map((child) => child.finish()));
}

/** In a client process: tells the parent it is ready, then waits for its `go`. */
export async function awaitStart(): Promise<void> {
  console.log(READY);
  for await (const line of lines(Deno.stdin.readable)) {
    if (line === GO) return;
  }
  throw new QsignError("bench: the parent qsign bench ended before the load started");
}

/** In a client process: hands the measurement to the parent. */
export function sendMeasurement(measurement: LoadMeasurement): void {
  console.log(JSON.stringify(measurement));
}
