// The soak's analysis: outcomes by phase, the two events' write gaps, lost writes, and pgfloat's fds and memory early, midway and late.

import { markdownTable } from '../lib/markdown';
import type { Ack, LoadLog } from '../lib/pooled-load';
import { mib } from '../lib/process-sample';
import { countBy, longestGap, sampleMedian, total, within } from '../lib/stats';
import type { FailoverEvent, Samples, SwitchoverEvent } from './events';
import type { ChurnOutcome, ReadOutcome } from './load';

export interface Verification {
  finalPrimary: string;
  finalStandby: string;
  /** (client, seq) rows on the final primary, read directly. */
  rowsOnPrimary: number;
  /** Acknowledged, yet absent from the final primary. */
  lost: Array<{ client: number; seq: number; port: number; msAfterKill: number }>;
  /** Of the unknown outcomes, found committed. */
  unknownCommitted: number;
  /** Reported failed, yet committed: must be 0. */
  failedButPresent: number;
  standbyHasEveryAcknowledgedWrite: boolean;
}

export interface PhaseRecord {
  name: string;
  seconds: number;
  acknowledged: number;
  tps: number;
  failed: Record<string, number>;
  unknown: number;
  connectFailures: Record<string, number>;
  idleClosed: number;
  reads: { ok: number; failed: Record<string, number> };
  churn: { ok: number; failed: Record<string, number>; slowestMs: number };
}

export interface EventRecord {
  name: string;
  route: string;
  outcome: string;
  /** Longest time between two consecutive acknowledgements overlapping the event. */
  writeGapMs: number;
  /** From the request (switchover) or the kill (failover) to the first write acknowledged by the new primary. */
  firstWriteOnNewPrimaryMs: number | null;
  /** Request or kill to the end of the whole operation, rejoin of the old primary included. */
  operationMs: number;
  failed: number;
  unknown: number;
}

export interface WindowFigures {
  name: string;
  from: number;
  to: number;
  samples: number;
  rssMiB: number;
  rssAnonMiB: number;
  heapUsedMiB: number;
  liveHeapMiB: number | null;
  openFds: number;
  clientConnections: number;
  /** Open fds minus two per client session (its client and server sockets): what a leak of descriptors would raise, whatever the pools' size. */
  fdsBesideSessions: number;
}

const brief = (counts: Record<string, number>): string =>
  total(counts) === 0
    ? '0'
    : `${total(counts)} (${Object.entries(counts)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')})`;

/** How long after the events end their phase runs on: pooled connections reconnect, the standby catches up. */
export const AFTER_EVENT_MS = 5000;

export function phases(loadStart: number, loadEnd: number, sw: SwitchoverEvent, fo: FailoverEvent, log: LoadLog, reads: ReadOutcome[], churn: ChurnOutcome[]): PhaseRecord[] {
  const bounds: Array<[string, number, number]> = [
    ['before the switchover', loadStart, sw.requestedAt],
    [`switchover, to ${AFTER_EVENT_MS / 1000} s after it ended`, sw.requestedAt, sw.endedAt + AFTER_EVENT_MS],
    ['between the events', sw.endedAt + AFTER_EVENT_MS, fo.killedAt],
    [`SIGKILL, failover and rejoin, to ${AFTER_EVENT_MS / 1000} s after`, fo.killedAt, fo.endedAt + AFTER_EVENT_MS],
    ['after the events', fo.endedAt + AFTER_EVENT_MS, loadEnd],
  ];
  return bounds.map(([name, from, to]) => {
    const acks = within(log.acks, from, to);
    const phaseChurn = within(churn, from, to);
    const phaseReads = within(reads, from, to);
    const seconds = Math.max(0, (to - from) / 1000);
    return {
      name,
      seconds: Math.round(seconds),
      acknowledged: acks.length,
      tps: seconds > 0 ? Math.round(acks.length / seconds) : 0,
      failed: countBy(within(log.failed, from, to), (f) => `${f.stage} ${f.code}`),
      unknown: within(log.unknown, from, to).length,
      connectFailures: countBy(within(log.connectFailures, from, to), (f) => f.code),
      idleClosed: within(log.idleClosed, from, to).length,
      reads: { ok: phaseReads.filter((r) => r.ok).length, failed: countBy(phaseReads.filter((r) => !r.ok), (r) => r.code ?? 'none') },
      churn: {
        ok: phaseChurn.filter((c) => c.ok).length,
        failed: countBy(phaseChurn.filter((c) => !c.ok), (c) => `${c.listener} ${c.code ?? 'none'}`),
        slowestMs: Math.max(0, ...phaseChurn.map((c) => c.ms)),
      },
    };
  });
}

const firstOn = (acks: Ack[], port: number, after: number): Ack | undefined => acks.find((a) => a.at >= after && a.port === port);

export function events(sw: SwitchoverEvent, fo: FailoverEvent, log: LoadLog): EventRecord[] {
  const swEnd = sw.operation.finishedAt ? Date.parse(sw.operation.finishedAt) : sw.endedAt;
  const swFirst = firstOn(log.acks, sw.toPort, sw.requestedAt);
  const foFirst = firstOn(log.acks, fo.toPort, fo.killedAt);
  // The failover's gap: from the last write before the kill to the first once writes flow again.
  const foGapEnd = foFirst?.at ?? fo.routedAt ?? fo.endedAt;
  return [
    {
      name: 'switchover (POST /switchover)',
      route: `${sw.from}→${sw.to}`,
      outcome: `${sw.operation.state}: ${sw.operation.result ?? ''}`,
      writeGapMs: longestGap(log.acks, sw.requestedAt, swEnd).ms,
      firstWriteOnNewPrimaryMs: swFirst ? swFirst.at - sw.requestedAt : null,
      operationMs: swEnd - sw.requestedAt,
      failed: within(log.failed, sw.requestedAt, sw.endedAt + AFTER_EVENT_MS).length,
      unknown: within(log.unknown, sw.requestedAt, sw.endedAt + AFTER_EVENT_MS).length,
    },
    {
      name: 'failover (SIGKILL of the primary), then POST /rejoin',
      route: `${fo.from}→${fo.to}`,
      outcome: fo.routedAt === null ? 'NO FAILOVER' : `failed over in ${fo.routedAt - fo.killedAt} ms; rejoin ${fo.rejoin?.state ?? 'not run'}: ${fo.rejoin?.result ?? fo.rejoinRefusals.join('; ')}`,
      writeGapMs: longestGap(log.acks, fo.killedAt, foGapEnd).ms,
      firstWriteOnNewPrimaryMs: foFirst ? foFirst.at - fo.killedAt : null,
      operationMs: fo.endedAt - fo.killedAt,
      failed: within(log.failed, fo.killedAt, fo.endedAt + AFTER_EVENT_MS).length,
      unknown: within(log.unknown, fo.killedAt, fo.endedAt + AFTER_EVENT_MS).length,
    },
  ];
}

/** Medians of pgfloat's figures over [from, to); the live heap from the forced GCs inside it. */
export function windowFigures(name: string, samples: Samples, from: number, to: number): WindowFigures {
  const proc = within(samples.process, from, to);
  const metrics = within(samples.metrics, from, to);
  const live = within(samples.liveHeap, from, to);
  return {
    name,
    from,
    to,
    samples: proc.length,
    rssMiB: mib(sampleMedian(proc.map((s) => s.rssBytes))),
    rssAnonMiB: mib(sampleMedian(proc.map((s) => s.rssAnonBytes))),
    heapUsedMiB: mib(sampleMedian(metrics.map((m) => m.heapUsedBytes))),
    liveHeapMiB: live.length ? mib(sampleMedian(live.map((l) => l.usedBytes))) : null,
    openFds: sampleMedian(proc.map((s) => s.openFds)),
    clientConnections: sampleMedian(metrics.map((m) => m.clientConnections)),
    // Each /proc sample with the /metrics read in the same round (within a second of it).
    fdsBesideSessions: sampleMedian(
      proc.flatMap((p) => {
        const m = metrics.find((x) => Math.abs(x.at - p.at) < 1000);
        return m === undefined ? [] : [p.openFds - 2 * m.clientConnections];
      }),
    ),
  };
}

export function summaryTable(minutes: number, log: LoadLog, reads: ReadOutcome[], churn: ChurnOutcome[], v: Verification): string {
  return markdownTable(
    ['duration', 'writes acknowledged', 'failed', 'unknown outcome (committed)', 'lost acknowledged writes', 'reads ok / failed', 'short sessions ok / failed', 'failed yet committed', 'rejoined standby has every acknowledged write'],
    [
      [
        `${minutes.toFixed(1)} min`,
        String(log.acks.length),
        String(log.failed.length),
        `${log.unknown.length} (${v.unknownCommitted})`,
        `**${v.lost.length}**`,
        `${reads.filter((r) => r.ok).length} / ${reads.filter((r) => !r.ok).length}`,
        `${churn.filter((c) => c.ok).length} / ${churn.filter((c) => !c.ok).length}`,
        String(v.failedButPresent),
        v.standbyHasEveryAcknowledgedWrite ? 'yes' : 'NO',
      ],
    ],
  );
}

export function eventTable(records: EventRecord[]): string {
  return markdownTable(
    ['event', 'nodes', 'write gap, ms', 'to first write on the new primary, ms', 'failed transactions', 'unknown outcomes', 'whole operation incl. rejoin, ms', 'outcome'],
    records.map((e) => [e.name, e.route, `**${e.writeGapMs}**`, String(e.firstWriteOnNewPrimaryMs ?? 'never'), String(e.failed), String(e.unknown), String(e.operationMs), e.outcome]),
  );
}

export function phaseTable(records: PhaseRecord[]): string {
  return markdownTable(
    ['phase', 's', 'acknowledged/s', 'failed', 'unknown', 'failed connects', 'reads failed', 'short sessions failed (slowest ms)'],
    records.map((p) => [p.name, String(p.seconds), String(p.tps), brief(p.failed), String(p.unknown), brief(p.connectFailures), brief(p.reads.failed), `${brief(p.churn.failed)} (${p.churn.slowestMs})`]),
  );
}

export function resourceTable(windows: WindowFigures[], startedAt: number): string {
  const at = (ms: number): string => `${Math.round((ms - startedAt) / 1000)}`;
  const rows = windows.map((w) => [
    `${w.name} (${at(w.from)}-${at(w.to)} s)`,
    String(w.samples),
    w.rssMiB.toFixed(1),
    w.rssAnonMiB.toFixed(1),
    w.heapUsedMiB.toFixed(1),
    w.liveHeapMiB === null ? '-' : w.liveHeapMiB.toFixed(1),
    String(w.openFds),
    String(w.clientConnections),
    String(w.fdsBesideSessions),
  ]);
  const first = windows[0];
  const last = windows[windows.length - 1];
  if (first && last && first !== last) {
    const d = (a: number, b: number): string => `${a - b >= 0 ? '+' : ''}${(Math.round((a - b) * 10) / 10).toFixed(1)}`;
    rows.push([
      '**growth, last minute vs first**',
      '',
      `**${d(last.rssMiB, first.rssMiB)}**`,
      d(last.rssAnonMiB, first.rssAnonMiB),
      d(last.heapUsedMiB, first.heapUsedMiB),
      last.liveHeapMiB === null || first.liveHeapMiB === null ? '-' : `**${d(last.liveHeapMiB, first.liveHeapMiB)}**`,
      `${last.openFds - first.openFds >= 0 ? '+' : ''}${last.openFds - first.openFds}`,
      '',
      `**${last.fdsBesideSessions - first.fdsBesideSessions >= 0 ? '+' : ''}${last.fdsBesideSessions - first.fdsBesideSessions}**`,
    ]);
  }
  return markdownTable(['window (median of samples)', 'samples', 'pgfloat RSS, MiB', 'anonymous, MiB', 'V8 heap used, MiB', 'live heap after a full GC, MiB', 'open fds', 'client connections', 'fds beside 2 per session'], rows);
}

/** One row per minute of the run: the trend that a first-versus-last comparison summarises. */
export function minuteTable(samples: Samples, loadStart: number, loadEnd: number): string {
  const rows: string[][] = [];
  for (let from = loadStart, minute = 0; from < loadEnd - 1000; from += 60_000, minute++) {
    const w = windowFigures(String(minute), samples, from, Math.min(from + 60_000, loadEnd));
    rows.push([String(minute), w.rssMiB.toFixed(1), w.rssAnonMiB.toFixed(1), w.liveHeapMiB === null ? '-' : w.liveHeapMiB.toFixed(1), String(w.openFds), String(w.clientConnections), String(w.fdsBesideSessions)]);
  }
  return markdownTable(['minute', 'RSS, MiB', 'anonymous, MiB', 'live heap, MiB', 'open fds', 'client connections', 'fds beside 2 per session'], rows);
}

export interface WriteStall {
  from: number;
  to: number;
  ms: number;
  /** It overlaps a time the bench process itself did not run (see Samples.benchStalls). */
  benchStalled: boolean;
}

/** Gaps over `minMs` between consecutive acknowledgements outside the two events: a soak should have none of pgfloat's making. */
export function writeStalls(acks: Ack[], sw: SwitchoverEvent, fo: FailoverEvent, samples: Samples, minMs = 1000): WriteStall[] {
  const inEvent = (from: number, to: number): boolean =>
    (to > sw.requestedAt && from < sw.endedAt + AFTER_EVENT_MS) || (to > fo.killedAt && from < fo.endedAt + AFTER_EVENT_MS);
  const stalls: WriteStall[] = [];
  for (let i = 1; i < acks.length; i++) {
    const from = acks[i - 1]!.at;
    const to = acks[i]!.at;
    if (to - from < minMs || inEvent(from, to)) continue;
    stalls.push({ from, to, ms: to - from, benchStalled: samples.benchStalls.some((b) => b.to > from && b.from < to) });
  }
  return stalls;
}

export function stallLine(stalls: WriteStall[], samples: Samples, loadStart: number): string {
  const at = (ms: number): string => `${Math.round((ms - loadStart) / 1000)} s`;
  const bench = samples.benchStalls.map((b) => `${at(b.from)} (+${b.lateMs} ms)`).join(', ') || 'none';
  const mine = stalls.filter((s) => !s.benchStalled);
  return (
    `Write stalls over 1 s outside the two events: ${stalls.length}` +
    (stalls.length ? ` (${stalls.map((s) => `${at(s.from)}: ${s.ms} ms${s.benchStalled ? ', bench stalled too' : ''}`).join('; ')})` : '') +
    `; not explained by a stall of the bench process itself: **${mine.length}**. Bench process stalls (sampler over 1 s late): ${bench}.`
  );
}

/** The results without the samples taken every few seconds: the figures and tables, small enough to commit. */
export function soakSummary<Doc extends { samples: unknown }>(doc: Doc): Omit<Doc, 'samples'> {
  const { samples: _samples, ...summary } = doc;
  return summary;
}
