/**
 * Deadlines (src/delay.ts): several of one length share a timer, yet each fires on its own time,
 * never early, in order, and not at all once cleared; a list with nothing pending keeps at most an
 * unreferenced timer, and deadlines set one after another reuse it.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { deadline, delay } from "../src/delay.ts";

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("deadlines of one length fire in order, each no earlier than its own due time", async () => {
  const fired: { index: number; lateMs: number }[] = [];
  const all = Promise.withResolvers<void>();
  const lengthMs = 40;
  for (let index = 0; index < 5; index++) {
    const dueMs = performance.now() + lengthMs;
    deadline(lengthMs, () => {
      fired.push({ index, lateMs: performance.now() - dueMs });
      if (fired.length === 5) all.resolve();
    });
    await wait(15);
  }
  await all.promise;
  deepEqual(fired.map(({ index }) => index), [0, 1, 2, 3, 4]);
  for (const { index, lateMs } of fired) {
    ok(lateMs >= -1, `deadline ${index} fired ${-lateMs} ms early`);
  }
});

Deno.test("a cleared deadline never fires, also when it was the list's first", async () => {
  const fired: string[] = [];
  const first = deadline(30, () => fired.push("first"));
  await wait(5);
  deadline(30, () => fired.push("second"));
  const third = deadline(30, () => fired.push("third"));
  first[Symbol.dispose]();
  third[Symbol.dispose]();
  await wait(60);
  deepEqual(fired, ["second"]);
  // Clearing after it fired, or twice, is harmless.
  first[Symbol.dispose]();
});

Deno.test("deadlines of different lengths keep their own times", async () => {
  const fired: number[] = [];
  const all = Promise.withResolvers<void>();
  for (const ms of [50, 10, 30]) {
    deadline(ms, () => {
      fired.push(ms);
      if (fired.length === 3) all.resolve();
    });
  }
  await all.promise;
  deepEqual(fired, [10, 30, 50]);
});

Deno.test("clearing every pending deadline leaves no timer keeping the process alive", async () => {
  // A process of its own sets and clears deadlines of a minute, then has nothing left to do: it
  // exits at once, unless a timer was left armed (then it would wait the minute out).
  const program = `
    import { deadline } from ${JSON.stringify(new URL("../src/delay.ts", import.meta.url).href)};
    const pending = Array.from({ length: 1000 }, (_, i) => deadline(60_000 + (i % 3), () => {}));
    for (const one of pending) one[Symbol.dispose]();
    deadline(5, () => console.log("fired")); // one that fires, retiring its list
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", program],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const watchdog = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const output = await child.output().finally(() => clearTimeout(watchdog));
  equal(output.signal, null, "still running 20 s later: a timer was left armed");
  equal(output.code, 0, new TextDecoder().decode(output.stderr));
  equal(new TextDecoder().decode(output.stdout).trim(), "fired");
});

Deno.test("deadlines set and cleared one after another share one timer", async () => {
  // As connections come and go: each sets its deadline and clears it before the next is set.
  const armed: number[] = [];
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = ((callback: () => void, ms?: number) => {
    armed.push(ms ?? 0);
    return realSetTimeout(callback, ms);
  }) as typeof setTimeout;
  const lengthMs = 60_017; // a length no other test uses, so its list starts empty
  let lastFired = false;
  try {
    for (let i = 0; i < 1000; i++) deadline(lengthMs, () => {})[Symbol.dispose]();
    // The lingering timer still serves a deadline set later, and it fires on its own time.
    await wait(20);
    deadline(80, () => lastFired = true);
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  deepEqual(armed.filter((ms) => ms === lengthMs), [lengthMs]);
  await wait(150);
  ok(lastFired);
});

Deno.test("a deadline set on an emptied list keeps the process alive until it fires", async () => {
  // The list's lingering timer was unreferenced when it emptied; the new deadline must take it
  // back, or the process would exit without firing it.
  const program = `
    import { deadline } from ${JSON.stringify(new URL("../src/delay.ts", import.meta.url).href)};
    deadline(200, () => {})[Symbol.dispose]();
    deadline(200, () => console.log("fired"));
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", program],
    stdout: "piped",
    stderr: "piped",
  }).output();
  equal(output.code, 0, new TextDecoder().decode(output.stderr));
  equal(new TextDecoder().decode(output.stdout).trim(), "fired");
});

Deno.test("a throwing deadline does not keep the others of its list from firing", async () => {
  const errors: unknown[] = [];
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    errors.push(event.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    let fired = false;
    deadline(10, () => {
      throw new Error("boom");
    });
    deadline(10, () => fired = true);
    await wait(40);
    ok(fired);
    equal((errors[0] as Error)?.message, "boom");
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("delay settles with its value, or is cleared by its disposal", async () => {
  equal(await delay(5, "done"), "done");
  let settled = false;
  {
    using pending = delay(20, "late");
    pending.then(() => settled = true);
  }
  await wait(40);
  equal(settled, false);
});
