// Turns the benchmark's raw measurements into medians, ratios to direct, markdown tables and JSON.

import { markdownTable } from '../lib/markdown';
import type { CpuTimes } from '../lib/process-sample';
import { median, percentile } from '../lib/stats';

/** One pgbench run of one workload on one target. */
export interface PgbenchRun {
  round: number;
  workload: string;
  target: string;
  tps: number;
  transactions: number;
  wallSeconds: number;
  /** The proxy's processes' CPU over the run (after minus before); null for direct. */
  proxyCpu: CpuTimes | null;
}

export interface ThroughputRow {
  workload: string;
  target: string;
  tpsPerRound: number[];
  medianTps: number;
  /** Median TPS divided by direct's median TPS for the same workload. */
  ratioToDirect: number;
  /** Median CPU of the proxy's processes during the runs, in % of one core; null for direct. */
  proxyCpuPercent: number | null;
  /** The proxy's CPU per pgbench transaction: the round with the median total, so user + system = total; null for direct. */
  proxyCpuUsPerTransaction: { user: number; system: number; total: number } | null;
  /** 1e6 / total µs per transaction: the transactions per second one core of proxy CPU carries at that cost. */
  tpsPerProxyCore: number | null;
  /** Processes summed (the proxy and its descendants), the most seen in a run. */
  proxyProcesses: number | null;
  /** With several processes: each one's share of the CPU (%), median per process over the rounds, the control process first. */
  cpuSharesByProcess: number[] | null;
}

const round1 = (v: number): number => Math.round(v * 10) / 10;

/** Each process's share of the proxy's CPU in one run, in %, the first process (pgfloat's control process) first. */
export function cpuShares(cpu: CpuTimes): number[] {
  const total = cpu.byProcess.reduce((sum, p) => sum + p.seconds, 0);
  return cpu.byProcess.map((p) => (total > 0 ? Math.round((p.seconds / total) * 100) : 0));
}

/**
 * The user/system split of the median total: the middle run (the mean of the two middle runs
 * for an even count) by total, so the split adds up, which separate medians would not.
 */
function medianSplit(perRun: Array<{ user: number; system: number }>): { user: number; system: number; total: number } | null {
  if (perRun.length === 0) return null;
  const byTotal = [...perRun].sort((a, b) => a.user + a.system - (b.user + b.system));
  const middle = byTotal.slice((byTotal.length - 1) >> 1, (byTotal.length >> 1) + 1);
  const mean = (pick: (r: { user: number; system: number }) => number): number => middle.reduce((sum, r) => sum + pick(r), 0) / middle.length;
  const user = mean((r) => r.user);
  const system = mean((r) => r.system);
  return { user: round1(user), system: round1(system), total: round1(user + system) };
}

export function throughputRows(workloads: string[], targets: string[], runs: PgbenchRun[]): ThroughputRow[] {
  const rows: ThroughputRow[] = [];
  for (const workload of workloads) {
    const of = (target: string): PgbenchRun[] => runs.filter((r) => r.workload === workload && r.target === target);
    const direct = median(of('direct').map((r) => r.tps));
    for (const target of targets) {
      const perRound = of(target).map((r) => r.tps);
      const cpuRuns = of(target).flatMap((r) => (r.proxyCpu === null ? [] : [{ ...r.proxyCpu, transactions: r.transactions, wallSeconds: r.wallSeconds }]));
      const medianTps = median(perRound);
      const perTxn = medianSplit(
        cpuRuns.filter((c) => c.transactions > 0).map((c) => ({ user: (c.userSeconds * 1e6) / c.transactions, system: (c.systemSeconds * 1e6) / c.transactions })),
      );
      rows.push({
        workload,
        target,
        tpsPerRound: perRound.map((v) => Math.round(v)),
        medianTps: Math.round(medianTps),
        ratioToDirect: Math.round((medianTps / direct) * 1000) / 1000,
        proxyCpuPercent: cpuRuns.length > 0 ? Math.round(median(cpuRuns.map((c) => ((c.userSeconds + c.systemSeconds) / c.wallSeconds) * 100))) : null,
        proxyCpuUsPerTransaction: perTxn,
        tpsPerProxyCore: perTxn === null || perTxn.total <= 0 ? null : Math.round(1e6 / perTxn.total),
        proxyProcesses: cpuRuns.length > 0 ? Math.max(...cpuRuns.map((c) => c.processes)) : null,
        cpuSharesByProcess: sharesByProcess(cpuRuns),
      });
    }
  }
  return rows;
}

/** The median share of each process position over the runs that had several processes; null when none had. */
function sharesByProcess(runs: CpuTimes[]): number[] | null {
  const shares = runs.filter((c) => c.processes > 1).map(cpuShares);
  if (shares.length === 0) return null;
  const positions = Math.max(...shares.map((s) => s.length));
  return Array.from({ length: positions }, (_, i) => Math.round(median(shares.map((s) => s[i] ?? 0))));
}

export interface LatencyRow {
  target: string;
  samples: number;
  p50Us: number;
  p99Us: number;
  addedP50Us: number;
  addedP99Us: number;
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
  return stats.map((s) => ({
    target: s.target,
    samples: s.samples,
    p50Us: round1(s.p50),
    p99Us: round1(s.p99),
    addedP50Us: round1(s.p50 - direct.p50),
    addedP99Us: round1(s.p99 - direct.p99),
  }));
}

const signed = (v: number): string => (v > 0 ? `+${v}` : String(v));

export function markdown(throughput: ThroughputRow[], latency: LatencyRow[]): string {
  const tp = markdownTable(
    ['workload', 'target', 'median TPS', 'vs direct', 'proxy CPU', 'user µs/txn', 'sys µs/txn', 'CPU µs/txn', 'TPS per proxy core', 'CPU by process'],
    throughput.map((r) => {
      const cpu = r.proxyCpuUsPerTransaction;
      return [
        r.workload,
        r.target,
        String(r.medianTps),
        r.ratioToDirect.toFixed(3),
        r.proxyCpuPercent === null ? '-' : `${r.proxyCpuPercent}%`,
        cpu === null ? '-' : cpu.user.toFixed(1),
        cpu === null ? '-' : cpu.system.toFixed(1),
        cpu === null ? '-' : cpu.total.toFixed(1),
        r.tpsPerProxyCore === null ? '-' : String(r.tpsPerProxyCore),
        r.cpuSharesByProcess === null ? '-' : r.cpuSharesByProcess.map((p) => `${p}%`).join(' / '),
      ];
    }),
  );
  const lat = markdownTable(
    ['target', 'p50 µs', 'p99 µs', 'added p50 µs', 'added p99 µs'],
    latency.map((r) => [r.target, r.p50Us.toFixed(1), r.p99Us.toFixed(1), signed(r.addedP50Us), signed(r.addedP99Us)]),
  );
  return `${tp}\n\n${lat}`;
}
