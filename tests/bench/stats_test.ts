/** The statistics of src/bench/stats.ts: nearest-rank percentiles and the union of intervals. */
import { deepEqual, equal, ok } from "node:assert/strict";
import { coveredTime, quantile, summarize } from "../../src/bench/stats.ts";

Deno.test("quantile: nearest rank, never interpolated", () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
  equal(quantile(sorted, 0.5), 50);
  equal(quantile(sorted, 0.9), 90);
  equal(quantile(sorted, 0.99), 99);
  equal(quantile(sorted, 1), 100);
  equal(quantile([7], 0.99), 7);
  equal(quantile([1, 2, 3], 0.5), 2);
  equal(quantile([1, 2, 3, 4], 0.5), 2);
  ok(Number.isNaN(quantile([], 0.5)));
});

Deno.test("summarize: order-independent, undefined without samples", () => {
  deepEqual(summarize([30, 10, 20, 40]), { min: 10, p50: 20, p90: 40, p99: 40, max: 40, mean: 25 });
  equal(summarize([]), undefined);
});

Deno.test("coveredTime: overlapping intervals count once, gaps not at all", () => {
  equal(coveredTime([]), 0);
  equal(coveredTime([{ start: 0, end: 10 }]), 10);
  equal(coveredTime([{ start: 5, end: 15 }, { start: 0, end: 10 }]), 15);
  equal(coveredTime([{ start: 0, end: 10 }, { start: 2, end: 3 }, { start: 20, end: 25 }]), 15);
  equal(coveredTime([{ start: 0, end: 10 }, { start: 10, end: 12 }]), 12);
});
