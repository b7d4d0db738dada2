/**
 * Conformance tables: one row per requirement, naming its RFC section and the outcome qsign must
 * show (the alert it sends, or `ok` for a handshake that must complete, or `closed` for a
 * connection it must close without an alert of its own). Rows run concurrently in small
 * batches against one peer under test; each becomes its own test step with its verdict.
 */
import { equal } from "node:assert/strict";

/** What a case observed: an alert name, `ok`, `closed`, or a description of what went wrong. */
export type Outcome = string;

export interface Row<C> {
  /** RFC 8446 section (or appendix) whose MUST / MUST NOT the row checks. */
  section: string;
  name: string;
  /** The alert qsign must send, `ok`, or `closed`. */
  expect: Outcome;
  run: (ctx: C) => Promise<Outcome>;
}

/** Rows are written as `row(section, expect, name, run)`. */
export function row<C>(
  section: string,
  expect: Outcome,
  name: string,
  run: (ctx: C) => Promise<Outcome>,
): Row<C> {
  return { section, name, expect, run };
}

/**
 * Runs every row (`batch` at a time, each bounded by `timeoutMs`) and reports each as a step:
 * `§section name → expected`.
 */
export async function runTable<C>(
  t: Deno.TestContext,
  rows: Row<C>[],
  ctx: C,
  options: { batch?: number; timeoutMs?: number } = {},
): Promise<void> {
  const names = new Set<string>();
  for (const r of rows) {
    const name = `§${r.section} ${r.name}`;
    if (names.has(name)) throw new Error(`two rows named ${name}`);
    names.add(name);
  }
  const batch = options.batch ?? 4;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const outcomes: Outcome[] = new Array(rows.length);
  let next = 0;
  const worker = async () => {
    while (next < rows.length) {
      const i = next++;
      let timer: ReturnType<typeof setTimeout> | undefined;
      outcomes[i] = await Promise.race([
        rows[i].run(ctx).catch((e) => `failed: ${e instanceof Error ? e.message : e}`),
        new Promise<Outcome>((r) => timer = setTimeout(() => r("timed out"), timeoutMs)),
      ]).finally(() => clearTimeout(timer));
    }
  };
  await Promise.all(Array.from({ length: batch }, worker));
  for (const [i, r] of rows.entries()) {
    await t.step(`§${r.section} ${r.name} → ${r.expect}`, () => {
      equal(outcomes[i], r.expect);
    });
  }
}
