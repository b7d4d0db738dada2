/**
 * The statistics of src/bench/stats.ts (nearest-rank percentiles, the union of intervals) and the
 * merging of client processes' measurements into one report's figures (src/bench/report.ts).
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { coveredTime, quantile, summarize, unionOf } from "../../src/bench/stats.ts";
import { type LoadMeasurement, mergeMeasurements } from "../../src/bench/report.ts";

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

Deno.test("unionOf: disjoint, ascending, and the input left as it was", () => {
  const intervals = [{ start: 20, end: 25 }, { start: 0, end: 10 }, { start: 5, end: 12 }];
  deepEqual(unionOf(intervals), [{ start: 0, end: 12 }, { start: 20, end: 25 }]);
  deepEqual(intervals[1], { start: 0, end: 10 });
  deepEqual(unionOf([]), []);
});

const CLIENT = { cpuUserMs: 0, cpuSystemMs: 0, cpuPercent: 0, rssPeakBytes: 0, rssEndBytes: 0 };

function measurement(part: Partial<LoadMeasurement>): LoadMeasurement {
  return {
    startMs: 0,
    endMs: 0,
    stoppedBy: "count",
    attempted: 0,
    completed: 0,
    resumed: 0,
    failed: 0,
    latencySamplesMs: [],
    errors: [],
    unclosed: 0,
    client: CLIENT,
    ...part,
  };
}

Deno.test("mergeMeasurements: percentiles of every sample together, not averaged", () => {
  // 90 fast handshakes in one process, 10 slow ones in the other: averaging the processes'
  // medians would give (45 + 1000) / 2.
  const fast = measurement({
    completed: 90,
    attempted: 90,
    latencySamplesMs: Array.from({ length: 90 }, (_, i) => i + 1),
  });
  const slow = measurement({
    completed: 10,
    attempted: 10,
    latencySamplesMs: Array(10).fill(1000),
  });
  deepEqual(mergeMeasurements([fast, slow]).latencyMs, {
    min: 1,
    p50: 50,
    p90: 90,
    p99: 1000,
    max: 1000,
    mean: (90 * 91 / 2 + 10 * 1000) / 100,
  });
  deepEqual(mergeMeasurements([slow]).latencyMs, summarize(slow.latencySamplesMs));
  equal(mergeMeasurements([measurement({}), measurement({})]).latencyMs, undefined);
});

Deno.test("mergeMeasurements: counts, errors, bytes and resources add up; one wall time", () => {
  const unknownCa = { phase: "handshake", kind: "unknown_ca", direction: "sent" } as const;
  const a = measurement({
    startMs: 1000,
    endMs: 2000,
    attempted: 6,
    completed: 4,
    resumed: 3,
    failed: 2,
    ticketReuses: 1,
    warmup: { connections: 2, failed: 0, tickets: 4 },
    latencySamplesMs: [1, 2, 3, 4],
    transfers: { count: 4, bytesSent: 400, bytesReceived: 40, spans: [{ start: 1000, end: 1200 }] },
    errors: [{ ...unknownCa, count: 2, example: "first" }],
    unclosed: 1,
    client: { ...CLIENT, cpuUserMs: 10, cpuPercent: 50, rssPeakBytes: 100, heapUsedPeakBytes: 7 },
  });
  const b = measurement({
    startMs: 1500,
    endMs: 3000,
    stoppedBy: "time",
    attempted: 5,
    completed: 4,
    resumed: 4,
    failed: 1,
    ticketReuses: 0,
    warmup: { connections: 1, failed: 1, tickets: 2 },
    latencySamplesMs: [5, 6, 7, 8],
    transfers: {
      count: 4,
      bytesSent: 400,
      bytesReceived: 40,
      spans: [{ start: 1100, end: 1300 }, { start: 2000, end: 2100 }],
    },
    errors: [
      { phase: "connect", kind: "ConnectionRefused", direction: "none", count: 1, example: "no" },
      { ...unknownCa, count: 3, example: "second" },
    ],
    client: { ...CLIENT, cpuUserMs: 20, cpuPercent: 70, rssPeakBytes: 200, heapUsedPeakBytes: 8 },
  });
  const merged = mergeMeasurements([a, b]);
  equal(merged.startedAt, new Date(1000).toISOString());
  equal(merged.stoppedBy, "time");
  equal(merged.durationMs, 2000);
  deepEqual(merged.handshakes, {
    attempted: 11,
    completed: 8,
    resumed: 7,
    full: 1,
    failed: 3,
    ticketReuses: 1,
    perSecond: 4,
  });
  deepEqual(merged.warmup, { connections: 3, failed: 1, tickets: 6 });
  deepEqual(merged.throughput, {
    transfers: 8,
    bytesSent: 800,
    bytesReceived: 80,
    transferMs: 400,
    bytesPerSecond: 2000,
  });
  deepEqual(merged.errors, [
    { ...unknownCa, count: 5, example: "first" },
    { phase: "connect", kind: "ConnectionRefused", direction: "none", count: 1, example: "no" },
  ]);
  equal(merged.unclosed, 1);
  deepEqual(merged.client, {
    cpuUserMs: 30,
    cpuSystemMs: 0,
    cpuPercent: 120,
    rssPeakBytes: 300,
    rssEndBytes: 0,
    heapUsedPeakBytes: 15,
  });
  // The inputs are left as they were (a process's own figures come from the same one).
  equal(a.errors[0].count, 2);
});
