// The figures the suites compute from what they recorded: medians, percentiles, counts, and the longest gap between acknowledgements.

/** The median, the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The median of known values only; null when there are none. */
export function medianOfKnown(values: readonly (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? null : median(known);
}

/** The middle sample (the upper one for an even count): a value that was observed, so counts stay whole. NaN without samples. */
export function sampleMedian(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

/** Nearest-rank percentile of samples sorted ascending. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** How many items fall under each key. */
export function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

export const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

/** The items stamped in [from, to). */
export const within = <T extends { at: number }>(items: readonly T[], from: number, to: number): T[] => items.filter((i) => i.at >= from && i.at < to);

/** Longest interval between consecutive acknowledgements that overlaps [from, to]. */
export function longestGap(acks: readonly { at: number }[], from: number, to: number): { ms: number; start: number; end: number } {
  let best = { ms: 0, start: from, end: from };
  for (let i = 1; i < acks.length; i++) {
    const a = acks[i - 1]!.at;
    const b = acks[i]!.at;
    if (b < from) continue;
    if (a > to) break;
    if (b - a > best.ms) best = { ms: b - a, start: a, end: b };
  }
  return best;
}
