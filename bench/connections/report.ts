// The connection benchmark's figures: one row per stage (memory, fds), the traffic run, and what they come to per 1,000 connections.

import type { OpenResult, TrafficResult } from './load-generator';
import { markdownTable } from '../lib/markdown';
import { mib, type MetricsSample, type ProcessSample } from '../lib/process-sample';

export type StageKind = 'baseline' | 'idle' | 'traffic' | 'after-traffic' | 'after-large' | 'closed';

export interface Stage extends MetricsSample {
  name: string;
  kind: StageKind;
  at: number;
  rssBytes: number;
  rssAnonBytes: number;
  openFds: number;
  /** V8 heap in use right after a full GC forced through the inspector; null without the heap probe. */
  liveHeapBytes: number | null;
  /** RSS shortly after that GC. */
  rssAfterGcBytes: number | null;
  /** The primary PostgreSQL server: postmaster and children, PSS. */
  server: { processes: number; pssBytes: number };
}

export interface TrafficRun {
  result: TrafficResult;
  pgfloatCpuPercent: number;
  serverCpuPercent: number;
  /** Share of the wall time pgfloat's event loop spent runnable but waiting for a CPU. */
  pgfloatWaitPercent: number;
  generatorWaitPercent: number;
  /** One-minute load average at the end of the traffic: the other work on the machine shows here. */
  loadAverage: number;
  /** pgfloat every 2 s during the traffic. */
  samples: ProcessSample[];
  /** The highest of each figure over those samples (PostgreSQL's once, half-way). */
  peak: Stage;
}

const ms = (us: number): string => (us / 1000).toFixed(2);

export function stageTable(stages: Stage[]): string {
  return markdownTable(
    ['stage', 'client connections', 'pgfloat RSS, MiB', 'of which anonymous, MiB', 'V8 heap used, MiB', 'live heap after a full GC, MiB', 'RSS after the GC, MiB', 'pgfloat open fds', 'primary PostgreSQL processes', 'their PSS, MiB'],
    stages.map((s) => [
      s.name,
      String(s.clientConnections),
      mib(s.rssBytes).toFixed(1),
      mib(s.rssAnonBytes).toFixed(1),
      mib(s.heapUsedBytes).toFixed(1),
      s.liveHeapBytes === null ? '-' : mib(s.liveHeapBytes).toFixed(1),
      s.rssAfterGcBytes === null ? '-' : mib(s.rssAfterGcBytes).toFixed(1),
      String(s.openFds),
      String(s.server.processes),
      mib(s.server.pssBytes).toFixed(0),
    ]),
  );
}

function trafficRow(label: string, run: TrafficRun): string[] {
  const r = run.result;
  const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
  return [
    label,
    String(r.connections),
    String(Math.round(r.offered / r.seconds)),
    String(Math.round(r.tps)),
    `${ms(r.selects.p50Us)} / ${ms(r.selects.p99Us)} / ${ms(r.selects.p999Us)}`,
    r.writes.count ? `${ms(r.writes.p50Us)} / ${ms(r.writes.p99Us)}` : '-',
    String(errors),
    label === 'direct' ? '-' : `${run.pgfloatCpuPercent}% (${run.pgfloatWaitPercent}%)`,
    `${run.serverCpuPercent}%`,
    `${r.generatorCpuPercent}% (${run.generatorWaitPercent}%)`,
    String(r.sendLagP99Ms),
    run.loadAverage.toFixed(1),
  ];
}

export function trafficTable(run: TrafficRun, direct: TrafficRun | undefined, intervalMs: number, writeEvery: number): string {
  const schedule = `each connection sends a query every ${intervalMs} ms${writeEvery > 0 ? `, 1 in ${writeEvery} an autocommit insert` : ''}, for ${Math.round(run.result.seconds)} s`;
  const table = markdownTable(
    ['target', 'connections', 'offered/s', 'TPS', 'select p50 / p99 / p99.9, ms', 'insert p50 / p99, ms', 'errors', 'pgfloat CPU (waiting for a CPU)', 'PostgreSQL CPU', 'generator CPU (waiting)', 'send lag p99, ms', 'load average'],
    [trafficRow('through pgfloat', run), ...(direct ? [trafficRow('direct', direct)] : [])],
  );
  const note =
    run.pgfloatWaitPercent >= 10 || run.generatorWaitPercent >= 10
      ? `\n\nThe machine was oversubscribed: pgfloat's event loop waited for a CPU ${run.pgfloatWaitPercent}% of the time (the generator ${run.generatorWaitPercent}%), so latencies above are mostly run-queue time.`
      : '';
  if (direct === undefined) return `${schedule}:\n\n${table}${note}`;
  const p = run.result.selects;
  const d = direct.result.selects;
  const added = `pgfloat vs direct in this run: TPS ratio ${(run.result.tps / direct.result.tps).toFixed(2)}, select latency added p50 ${ms(p.p50Us - d.p50Us)} ms, p99 ${ms(p.p99Us - d.p99Us)} ms.`;
  return `${schedule}:\n\n${table}\n\n${added}${note}`;
}

export interface PerThousand {
  clients: number;
  rssMiB: number;
  rssAnonMiB: number;
  heapUsedMiB: number;
  /** From the live heap after forced GCs; null without the heap probe. */
  liveHeapMiB: number | null;
  fdsPerClient: number;
  serverPssMiB: number;
  /** External (ArrayBuffer) memory allocated per 1,000: the read buffers, resident or not. */
  externalMiB: number;
  /** RSS over the baseline per 1,000 once every connection has had one large answer; null if not measured. */
  afterLargeRssMiB: number | null;
  /** The same from each step of the ramp (0 to 1,000, 1,000 to 2,000, ...), to show it is linear. */
  steps: Array<{ from: number; to: number; rssMiB: number }>;
}

/** pgfloat's growth from no clients to all of them idle, scaled to 1,000 clients. */
export function perThousand(stages: Stage[]): PerThousand | undefined {
  const base = stages.find((s) => s.kind === 'baseline');
  const idle = stages.filter((s) => s.kind === 'idle');
  const full = idle[idle.length - 1];
  if (base === undefined || full === undefined || full.clientConnections === 0) return undefined;
  const k = full.clientConnections / 1000;
  const per = (f: (s: Stage) => number): number => Math.round(mib((f(full) - f(base)) / k) * 100) / 100;
  const ramp = [base, ...idle];
  const large = stages.find((s) => s.kind === 'after-large');
  return {
    clients: full.clientConnections,
    rssMiB: per((s) => s.rssBytes),
    rssAnonMiB: per((s) => s.rssAnonBytes),
    heapUsedMiB: per((s) => s.heapUsedBytes),
    liveHeapMiB: base.liveHeapBytes === null || full.liveHeapBytes === null ? null : per((s) => s.liveHeapBytes!),
    fdsPerClient: Math.round(((full.openFds - base.openFds) / full.clientConnections) * 100) / 100,
    serverPssMiB: per((s) => s.server.pssBytes),
    externalMiB: per((s) => s.externalBytes),
    afterLargeRssMiB: large === undefined ? null : Math.round(mib((large.rssBytes - base.rssBytes) / k) * 100) / 100,
    steps: ramp.slice(1).map((s, i) => {
      const prev = ramp[i]!;
      const clients = s.clientConnections - prev.clientConnections;
      return { from: prev.clientConnections, to: s.clientConnections, rssMiB: clients > 0 ? Math.round(mib(((s.rssBytes - prev.rssBytes) * 1000) / clients) * 100) / 100 : 0 };
    }),
  };
}

export function summaryLines(stages: Stage[], opens: OpenResult[], run: TrafficRun, rowsWritten: number, lost: Record<string, number>): string {
  const established = opens.reduce((n, o) => n + o.established, 0);
  const failed = opens.reduce((n, o) => n + o.failed, 0);
  const openMs = opens.reduce((n, o) => n + o.ms, 0);
  const lostCount = Object.values(lost).reduce((a, b) => a + b, 0);
  const lines = [
    `Connections: ${established} established, ${failed} failed${failed ? ` (${JSON.stringify(opens.map((o) => o.errors))})` : ''}, ${lostCount} lost while held${lostCount ? ` (${JSON.stringify(lost)})` : ''}; opened at ${Math.round((established * 1000) / Math.max(1, openMs))}/s.`,
  ];
  const p = perThousand(stages);
  if (p) {
    lines.push(
      `Memory per 1,000 idle client connections (pgfloat only, PostgreSQL's backends excluded): RSS +${p.rssMiB} MiB (anonymous +${p.rssAnonMiB} MiB, V8 heap used +${p.heapUsedMiB} MiB${p.liveHeapMiB === null ? '' : `, live heap after a full GC +${p.liveHeapMiB} MiB`}); ` +
        `by step: ${p.steps.map((s) => `${s.from}→${s.to}: +${s.rssMiB} MiB per 1,000`).join(', ')}. ` +
        `Open fds per client: ${p.fdsPerClient} (client socket + server socket).`,
      `pgfloat allocates a 64 kB read buffer per server socket (external memory +${p.externalMiB} MiB per 1,000), resident only as far as answers have filled it: ` +
        (p.afterLargeRssMiB === null ? 'not measured.' : `once every connection has had one large answer, RSS is +${p.afterLargeRssMiB} MiB per 1,000 over the baseline.`),
      `For context, the primary's PostgreSQL processes grew by ${p.serverPssMiB} MiB (PSS) per 1,000 backends` +
        (p.rssMiB >= 1 ? `, ${(p.serverPssMiB / p.rssMiB).toFixed(0)} times pgfloat's figure.` : '.'),
    );
  }
  const base = stages.find((s) => s.kind === 'baseline');
  const closed = stages.find((s) => s.kind === 'closed');
  if (base && closed) {
    lines.push(
      `After every client closed: ${closed.clientConnections} clients, fds ${closed.openFds} (baseline ${base.openFds}: ${closed.openFds <= base.openFds ? 'back to baseline' : `+${closed.openFds - base.openFds} NOT released`}), ` +
        `RSS ${mib(closed.rssBytes)} MiB` +
        (closed.rssAfterGcBytes === null ? '' : `, ${mib(closed.rssAfterGcBytes)} MiB after a full GC`) +
        ` (baseline ${mib(base.rssBytes)} MiB; what is above it is memory the allocator kept after freeing, unless the live heap is up too), V8 heap used ${mib(closed.heapUsedBytes)} MiB (baseline ${mib(base.heapUsedBytes)})` +
        (closed.liveHeapBytes !== null && base.liveHeapBytes !== null ? `, live heap after a full GC ${mib(closed.liveHeapBytes)} MiB (baseline ${mib(base.liveHeapBytes)})` : '') +
        `, active handles ${closed.activeHandles} (baseline ${base.activeHandles}).`,
    );
  }
  const r = run.result;
  lines.push(
    `Writes during the traffic: ${r.writesAcknowledged} acknowledged, ${rowsWritten} rows in conn_writes on the primary${rowsWritten === r.writesAcknowledged ? '' : ' (MISMATCH)'}. ` +
      `The generator used ${r.generatorCpuPercent}% of a core and sent its queries at most ${r.sendLagP99Ms} ms late (p99; max ${r.sendLagMaxMs} ms)` +
      (r.sendLagP99Ms <= 20 && r.generatorCpuPercent < 80
        ? ': it kept its schedule and was not the bottleneck.'
        : r.completed >= 0.99 * r.offered
          ? `: it completed the schedule, late because it waited for a CPU ${run.generatorWaitPercent}% of the time; latencies include that wait.`
          : ": it FELL BEHIND its schedule; the TPS figure is the generator's, not pgfloat's."),
  );
  return lines.join('\n');
}

/** The results without pgfloat's samples during the traffic: the figures and tables, small enough to commit. */
export function connectionsSummary<Doc extends { run: TrafficRun; direct?: TrafficRun }>(doc: Doc): Omit<Doc, 'run' | 'direct'> & { run: object; direct?: object } {
  const withoutSamples = ({ samples: _samples, ...figures }: TrafficRun): object => figures;
  return { ...doc, run: withoutSamples(doc.run), direct: doc.direct && withoutSamples(doc.direct) };
}
