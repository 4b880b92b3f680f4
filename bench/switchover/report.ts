// The switchover benchmark's analysis: one record per switchover from the load log, pgfloat's log and the operation, then markdown tables.

import type { SwitchoverRun } from '../lib/admin-api';
import type { PgfloatLogLine } from '../lib/pgfloat-log';
import type { Ack, Failure, LoadLog } from '../lib/pooled-load';
import { countBy, longestGap, median, total, within } from '../lib/stats';
import type { Probe, ReadLog } from './load';

/** What the main loop knows about one switchover when it ends. */
export interface Attempt extends SwitchoverRun {
  index: number;
  /** When its window ends: the next switchover's request, or the end of the load. */
  windowEnd: number;
  /** Checked directly on the new primary at the end of the steady period after it. */
  verification: { at: number; acknowledgedSoFar: number; missing: number; balanced: boolean };
}

export interface PhaseTimes {
  held: number | null;
  drained: number | null;
  fenceRecorded: number | null;
  writesStopped: number | null;
  caughtUp: number | null;
  promoteReturned: number | null;
  promotedVerified: number | null;
  complete: number | null;
  rollback: number | null;
}

export interface SwitchoverRecord {
  index: number;
  from: string;
  to: string;
  refusals: string[];
  operationState: string;
  operationResult: string | null;
  /** Request to the end of the operation, the rejoin of the old primary included. */
  operationMs: number | null;
  /** Request to the first transaction acknowledged by the new primary. */
  firstWriteOnNewPrimaryMs: number | null;
  /** Longest time between two consecutive acknowledgements that overlaps [request, end of the operation]. */
  writeGapMs: number;
  gapFromMs: number;
  gapToMs: number;
  acknowledged: number;
  /** Failed transactions in the window (request to next request), by SQLSTATE. */
  failed: Record<string, number>;
  failedByStage: Record<string, number>;
  unknown: number;
  /** Of the unknown ones: found committed on the final primary. */
  unknownCommitted: number;
  /** Reported failed, yet committed: must be 0. */
  failedButPresent: number;
  connectFailures: Record<string, number>;
  /** Idle pooled connections closed under the pool (no transaction affected), by SQLSTATE. */
  idleClosed: Record<string, number>;
  lostAcknowledgedWrites: number;
  balanced: boolean;
  drain: { atBoundary: number; cut: number } | null;
  phases: PhaseTimes;
  /** Operation steps, ms after the request. */
  steps: Array<{ ms: number; message: string }>;
  /** pgfloat log lines at warn and above that are not the switchover's own progress lines, plus per-message counts of proxy session lines. */
  unexpectedLog: Array<{ ms: number; level: number; component: string; msg: string }>;
  proxySessionLines: Record<string, number>;
  failureSamples: Array<{ ms: number; client: number; stage: string; code: string; viaSessionError: boolean; message: string }>;
  reads: { ok: number; failed: Record<string, number>; connectFailures: number; longestGapMs: number } | null;
  /** New unpooled connections through the read-write port started in the window: refusals by SQLSTATE, and the slowest (held) one. */
  probes: { ok: number; refused: Record<string, number>; slowestMs: number; refusalSamples: Array<{ ms: number; message: string }> } | null;
}

const keyOf = (f: { client: number; seq: number }): string => `${f.client}/${f.seq}`;

const PROGRESS = /^(switchover: |switchover complete|failover: pg_promote|failover: new primary verified|admin operation requested)/;

function phases(log: PgfloatLogLine[], t0: number): PhaseTimes {
  const first = (pred: (msg: string) => boolean): number | null => {
    const line = log.find((l) => pred(l.msg));
    return line === undefined ? null : line.at - t0;
  };
  return {
    held: first((m) => m.startsWith('switchover: holding new writers')),
    drained: first((m) => /^switchover: sessions on \S+ (moved or )?closed/.test(m)),
    fenceRecorded: first((m) => m.startsWith('switchover: fence recorded')),
    writesStopped: first((m) => m.includes('takes no more writes')),
    caughtUp: first((m) => m.includes(' replayed up to ')),
    promoteReturned: first((m) => m.startsWith('failover: pg_promote() returned')),
    promotedVerified: first((m) => m.startsWith('failover: new primary verified')),
    complete: first((m) => m.startsWith('switchover: complete')),
    rollback: first((m) => m.startsWith('switchover: rolling back') || m.startsWith('switchover rolled back')),
  };
}

export interface FinalHistory {
  keys: Set<string>;
}

/** One switchover's record, times in ms after its request: everything in [request, next request), against the final primary's history for failed and unknown ones. */
export function analyse(a: Attempt, load: LoadLog, reads: ReadLog | undefined, probes: Probe[] | undefined, log: PgfloatLogLine[], final: FinalHistory): SwitchoverRecord {
  const t0 = a.requestedAt;
  const opEnd = a.operation.finishedAt ? Date.parse(a.operation.finishedAt) : a.windowEnd;
  const windowLog = within(log, t0 - 50, a.windowEnd); // the request may be logged a hair before our clock read
  const gap = longestGap(load.acks, t0, opEnd);
  const acks = within(load.acks, t0, a.windowEnd);
  const failed = within(load.failed, t0, a.windowEnd);
  const unknown = within(load.unknown, t0, a.windowEnd);
  const firstOnNew = acks.find((k: Ack) => k.port === a.toPort);
  const drainLine = windowLog.find((l) => /^switchover: sessions on \S+ (moved or )?closed/.test(l.msg));
  const drainNumbers = drainLine ? /\((\d+) at a transaction boundary, (\d+) cut/.exec(drainLine.msg) : null;
  const sample = (f: Failure): SwitchoverRecord['failureSamples'][number] => ({
    ms: f.at - t0,
    client: f.client,
    stage: f.stage,
    code: f.code,
    viaSessionError: f.viaSessionError,
    message: f.message,
  });
  let readStats: SwitchoverRecord['reads'] = null;
  if (reads !== undefined) {
    const ok = reads.okAt.filter((at) => at >= t0 && at < a.windowEnd);
    readStats = {
      ok: ok.length,
      failed: countBy(within(reads.failed, t0, a.windowEnd), (f) => f.code),
      connectFailures: within(reads.connectFailures, t0, a.windowEnd).length,
      longestGapMs: longestGap(
        reads.okAt.map((at) => ({ at })),
        t0,
        opEnd,
      ).ms,
    };
  }
  const windowProbes = probes === undefined ? undefined : within(probes, t0, a.windowEnd);
  const refused = windowProbes?.filter((p) => !p.ok) ?? [];
  const probeStats: SwitchoverRecord['probes'] =
    windowProbes === undefined
      ? null
      : {
          ok: windowProbes.length - refused.length,
          refused: countBy(refused, (p) => p.code ?? 'none'),
          slowestMs: Math.max(0, ...windowProbes.map((p) => p.ms)),
          refusalSamples: refused.slice(0, 5).map((p) => ({ ms: p.at - t0, message: p.message ?? '' })),
        };
  return {
    index: a.index,
    from: a.from,
    to: a.to,
    refusals: a.refusals,
    operationState: a.operation.state,
    operationResult: a.operation.result,
    operationMs: a.operation.finishedAt ? opEnd - t0 : null,
    firstWriteOnNewPrimaryMs: firstOnNew ? firstOnNew.at - t0 : null,
    writeGapMs: gap.ms,
    gapFromMs: gap.start - t0,
    gapToMs: gap.end - t0,
    acknowledged: acks.length,
    failed: countBy(failed, (f) => f.code),
    failedByStage: countBy(failed, (f) => f.stage),
    unknown: unknown.length,
    unknownCommitted: unknown.filter((f) => final.keys.has(keyOf(f))).length,
    failedButPresent: failed.filter((f) => final.keys.has(keyOf(f))).length,
    connectFailures: countBy(within(load.connectFailures, t0, a.windowEnd), (f) => `${f.code}: ${f.message}`),
    idleClosed: countBy(within(load.idleClosed, t0, a.windowEnd), (f) => f.code),
    lostAcknowledgedWrites: a.verification.missing,
    balanced: a.verification.balanced,
    drain: drainNumbers ? { atBoundary: Number(drainNumbers[1]), cut: Number(drainNumbers[2]) } : null,
    phases: phases(windowLog, t0),
    steps: a.operation.steps.map((s) => ({ ms: Date.parse(s.at) - t0, message: s.message })),
    unexpectedLog: windowLog.filter((l) => l.level >= 40 && !PROGRESS.test(l.msg)).map((l) => ({ ms: l.at - t0, level: l.level, component: l.component, msg: l.msg })),
    proxySessionLines: countBy(
      windowLog.filter((l) => l.component === 'proxy' && l.level >= 30),
      (l) => l.msg,
    ),
    failureSamples: [...failed.slice(0, 10), ...unknown.slice(0, 10)].map(sample),
    reads: readStats,
    probes: probeStats,
  };
}

const codes = (r: Record<string, number>): string =>
  Object.keys(r).length === 0
    ? '0'
    : Object.entries(r)
        .map(([k, n]) => `${n}×${k}`)
        .join(' ');
const ms = (v: number | null): string => (v === null ? 'n/a' : String(Math.round(v)));

interface Row {
  label: string;
  values: (number | null)[];
  /** What each run shows; defaults to the value. */
  shown?: string[];
}

function row(r: Row): string {
  const known = r.values.filter((v): v is number => v !== null);
  const med = known.length ? ms(median(known)) : 'n/a';
  const worst = known.length ? ms(Math.max(...known)) : 'n/a';
  return `| ${r.label} | ${med} | ${worst} | ${(r.shown ?? r.values.map(ms)).join(', ')} |`;
}

/** Medians and worst over the switchovers, then every switchover's figure. */
export function summaryTable(records: SwitchoverRecord[]): string {
  const rows: Row[] = [
    { label: 'write gap: longest time between two acknowledged transactions, ms', values: records.map((r) => r.writeGapMs) },
    { label: 'request → first transaction acknowledged by the new primary, ms', values: records.map((r) => r.firstWriteOnNewPrimaryMs) },
    { label: 'request → promotion complete, held writers released (pgfloat log), ms', values: records.map((r) => r.phases.complete) },
    { label: 'request → operation finished, old primary rejoined as standby, ms', values: records.map((r) => r.operationMs) },
    { label: 'failed transactions (by SQLSTATE)', values: records.map((r) => total(r.failed)), shown: records.map((r) => codes(r.failed)) },
    {
      label: 'unknown outcome: COMMIT sent, then FATAL or connection lost (how many had committed)',
      values: records.map((r) => r.unknown),
      shown: records.map((r) => `${r.unknown} (${r.unknownCommitted})`),
    },
    { label: 'failed new connections (pool.connect)', values: records.map((r) => total(r.connectFailures)) },
    {
      label: 'new unpooled connections (one every probe interval) refused',
      values: records.map((r) => (r.probes ? total(r.probes.refused) : null)),
      shown: records.map((r) => (r.probes ? codes(r.probes.refused) : 'n/a')),
    },
    { label: 'slowest new unpooled connection (held by pgfloat), ms', values: records.map((r) => r.probes?.slowestMs ?? null) },
    { label: 'idle pooled connections closed by pgfloat', values: records.map((r) => total(r.idleClosed)), shown: records.map((r) => codes(r.idleClosed)) },
    {
      label: 'old primary sessions cut at drainMs (each: closed at a transaction boundary / cut)',
      values: records.map((r) => r.drain?.cut ?? null),
      shown: records.map((r) => (r.drain ? `${r.drain.atBoundary}/${r.drain.cut}` : 'n/a')),
    },
    { label: 'lost acknowledged writes (must be 0)', values: records.map((r) => r.lostAcknowledgedWrites) },
    { label: 'failed yet committed (must be 0)', values: records.map((r) => r.failedButPresent) },
  ];
  const header = `| per switchover (${records.map((r) => `${r.from}→${r.to}`).join(', ')}) | median | worst | each switchover |`;
  return [header, '|---|---:|---:|---|', ...rows.map(row)].join('\n');
}

/** Where the time goes: median ms after the request of each step pgfloat logs. */
export function phaseTable(records: SwitchoverRecord[]): string {
  const names: Array<[keyof PhaseTimes, string]> = [
    ['held', 'new writers held, drain started'],
    ['drained', 'old primary sessions closed'],
    ['fenceRecorded', 'fence persisted'],
    ['writesStopped', 'old primary read-only, final LSN read'],
    ['caughtUp', 'standby replayed it'],
    ['promoteReturned', 'pg_promote() returned'],
    ['promotedVerified', 'new primary seen out of recovery'],
    ['complete', 'held writers released'],
  ];
  const lines = ['| step (pgfloat log) | median ms after the request | worst | each switchover |', '|---|---:|---:|---|'];
  for (const [key, label] of names) lines.push(row({ label, values: records.map((r) => r.phases[key]) }));
  return lines.join('\n');
}

export const QUOTED = [
  '| for context, quoted from the issue, not measured here | write gap | failed writes |',
  '|---|---:|---:|',
  '| `patronictl switchover` behind HAProxy, default settings | 6.4 s | about 126 |',
  '| `patronictl switchover` behind HAProxy, aggressive settings | 2.5 s | about 50 |',
].join('\n');

/** One line for a README table comparing runs (writers count, medians with the worst in parentheses). */
export function readmeRow(writers: number, tps: number, records: SwitchoverRecord[]): string {
  const mw = (values: (number | null)[]): string => {
    const known = values.filter((v): v is number => v !== null);
    return known.length ? `${ms(median(known))} (${ms(Math.max(...known))})` : 'n/a';
  };
  return (
    `| ${writers} | ${Math.round(tps)} | ${mw(records.map((r) => r.writeGapMs))} | ${mw(records.map((r) => r.firstWriteOnNewPrimaryMs))} | ` +
    `${mw(records.map((r) => total(r.failed)))} | ${mw(records.map((r) => r.unknown))} | ${mw(records.map((r) => total(r.connectFailures)))} | ` +
    `${records.reduce((s, r) => s + r.lostAcknowledgedWrites, 0)} | ${mw(records.map((r) => r.operationMs))} |`
  );
}

export const README_HEADER = [
  '| writers | steady TPS | write gap, ms | request → first write on new primary, ms | failed transactions | unknown outcomes | failed new connections | lost acknowledged writes (all switchovers) | whole operation incl. rejoin, ms |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
].join('\n');

/** The results without each switchover's operation steps, log lines and failure samples: the figures and tables, small enough to commit. */
export function switchoverSummary<Doc extends { switchovers: SwitchoverRecord[] }>(doc: Doc): Omit<Doc, 'switchovers'> & { switchovers: object[] } {
  return { ...doc, switchovers: doc.switchovers.map(({ steps: _s, unexpectedLog: _u, proxySessionLines: _p, failureSamples: _f, ...figures }) => figures) };
}
