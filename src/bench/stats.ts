/** Summary statistics for benchmark samples: percentiles and busy time of overlapping intervals. */

/** Latency summary in milliseconds. */
export interface LatencySummary {
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/**
 * The `q`-quantile (0..1) of `sorted` (ascending) by the nearest-rank method: the smallest
 * sample such that at least `q` of all samples are less than or equal to it. NaN when empty.
 */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

/** min, p50, p90, p99, max and mean of `samples`; undefined when there are none. */
export function summarize(samples: readonly number[]): LatencySummary | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((total, x) => total + x, 0);
  return {
    min: sorted[0],
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    max: sorted[sorted.length - 1],
    mean: sum / sorted.length,
  };
}

/** A span of time, `start` ≤ `end`, in any one unit. */
export interface Interval {
  start: number;
  end: number;
}

/**
 * The union of `intervals` as disjoint intervals in ascending order. A client process sends its
 * union rather than every transfer: as long as the load is concurrent it is a handful of spans.
 */
export function unionOf(intervals: readonly Interval[]): Interval[] {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  const union: Interval[] = [];
  for (const { start, end } of sorted) {
    const last = union.at(-1);
    if (last && start <= last.end) last.end = Math.max(last.end, end);
    else union.push({ start, end });
  }
  return union;
}

/**
 * The total length of the union of `intervals`: how long at least one of them was in progress.
 * Used for throughput, so that concurrent transfers are counted once and handshake time between
 * transfers is not counted at all.
 */
export function coveredTime(intervals: readonly Interval[]): number {
  return unionOf(intervals).reduce((total, { start, end }) => total + end - start, 0);
}
