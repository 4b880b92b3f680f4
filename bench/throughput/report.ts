// Turns the benchmark's raw measurements into medians, ratios to direct, markdown tables and JSON.

import { markdownTable } from '../lib/markdown';
import { median, percentile } from '../lib/stats';

export interface ThroughputRow {
  workload: string;
  target: string;
  tpsPerRound: number[];
  medianTps: number;
  /** Median TPS divided by direct's median TPS for the same workload. */
  ratioToDirect: number;
  /** Median CPU of the proxy process during the runs, in % of one core; null for direct. */
  proxyCpuPercent: number | null;
}

export interface LatencyRow {
  target: string;
  samples: number;
  p50Us: number;
  p99Us: number;
  addedP50Us: number;
  addedP99Us: number;
}

export function throughputRows(
  workloads: string[],
  targets: string[],
  tps: Map<string, number[]>,
  cpu: Map<string, number[]>,
): ThroughputRow[] {
  const key = (w: string, t: string): string => `${w}\u0000${t}`;
  const rows: ThroughputRow[] = [];
  for (const workload of workloads) {
    const direct = median(tps.get(key(workload, 'direct')) ?? []);
    for (const target of targets) {
      const perRound = tps.get(key(workload, target)) ?? [];
      const cpuRuns = cpu.get(key(workload, target)) ?? [];
      const medianTps = median(perRound);
      rows.push({
        workload,
        target,
        tpsPerRound: perRound.map((v) => Math.round(v)),
        medianTps: Math.round(medianTps),
        ratioToDirect: Math.round((medianTps / direct) * 1000) / 1000,
        proxyCpuPercent: cpuRuns.length > 0 ? Math.round(median(cpuRuns)) : null,
      });
    }
  }
  return rows;
}

export function latencyRows(samples: Map<string, Float64Array[]>): LatencyRow[] {
  const stats = [...samples].map(([target, parts]) => {
    const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    all.sort();
    return { target, samples: all.length, p50: percentile(all, 50), p99: percentile(all, 99) };
  });
  const direct = stats.find((s) => s.target === 'direct')!;
  const r = (v: number): number => Math.round(v * 10) / 10;
  return stats.map((s) => ({
    target: s.target,
    samples: s.samples,
    p50Us: r(s.p50),
    p99Us: r(s.p99),
    addedP50Us: r(s.p50 - direct.p50),
    addedP99Us: r(s.p99 - direct.p99),
  }));
}

const signed = (v: number): string => (v > 0 ? `+${v}` : String(v));

export function markdown(throughput: ThroughputRow[], latency: LatencyRow[]): string {
  const tp = markdownTable(
    ['workload', 'target', 'median TPS', 'vs direct', 'proxy CPU'],
    throughput.map((r) => [
      r.workload,
      r.target,
      String(r.medianTps),
      r.ratioToDirect.toFixed(3),
      r.proxyCpuPercent === null ? '-' : `${r.proxyCpuPercent}%`,
    ]),
  );
  const lat = markdownTable(
    ['target', 'p50 µs', 'p99 µs', 'added p50 µs', 'added p99 µs'],
    latency.map((r) => [r.target, r.p50Us.toFixed(1), r.p99Us.toFixed(1), signed(r.addedP50Us), signed(r.addedP99Us)]),
  );
  return `${tp}\n\n${lat}`;
}
