// The failover benchmark's results: pgfloat log lines read back, per-run records, medians and markdown tables.

import type { FaultName } from '../lib/faults';
import { readPgfloatLog } from '../lib/pgfloat-log';
import { longestGap, medianOfKnown } from '../lib/stats';
import type { WriteAttempt } from './writer';

export interface Profile {
  name: string;
  intervalMs: number;
  timeoutMs: number;
  failuresBeforeDown: number;
}

export const settings = (p: Profile): string => `intervalMs ${p.intervalMs}, timeoutMs ${p.timeoutMs}, failuresBeforeDown ${p.failuresBeforeDown}`;

/** One pgfloat log line about health, routing or failover; `t` is ms after the reference time (the fault). */
export interface LogEvent {
  t: number;
  level: string;
  component: string;
  msg: string;
  fields: Record<string, unknown>;
}

const LEVELS: Record<number, string> = { 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const KEPT = new Set(['failover', 'monitor', 'router']);

/** pgfloat's JSON log lines from the failover, monitor and router components (or `components`), at info and above. */
export function readLog(file: string, reference: number, components: ReadonlySet<string> = KEPT): LogEvent[] {
  return readPgfloatLog(file)
    .filter((line) => line.level >= 30 && components.has(line.component))
    .map((line) => ({ t: line.at - reference, level: LEVELS[line.level] ?? String(line.level), component: line.component, msg: line.msg, fields: line.fields }));
}

export const healthChanges = (log: LogEvent[], node: string, to: string): LogEvent[] =>
  log.filter((e) => e.msg === 'node health changed' && e.fields.node === node && e.fields.to === to);

export const firstT = (log: LogEvent[], pred: (e: LogEvent) => boolean): number | null => log.find((e) => e.t >= 0 && pred(e))?.t ?? null;

export const blockedReasons = (log: LogEvent[]): string[] => [...new Set(log.filter((e) => e.msg.startsWith('no failover:')).map((e) => e.msg))];

/** A writer's acknowledgements as `longestGap` takes them. */
export const ackTimes = (attempts: readonly WriteAttempt[]): { at: number }[] => attempts.filter((a) => a.ok).map((a) => ({ at: a.endedAt }));

/**
 * The write gap as a writer sees it: the longest stretch between two acknowledgements (ms), from
 * the last acknowledgement before `at` on; null if nothing was acknowledged after `at`.
 */
export function writeGap(attempts: readonly WriteAttempt[], at: number): number | null {
  return attempts.some((a) => a.ok && a.endedAt >= at) ? longestGap(ackTimes(attempts), at, Infinity).ms : null;
}

export interface FaultRun {
  profile: string;
  fault: FaultName;
  run: number;
  /** The random wait added to the warm-up (`RunOptions.randomPhase`), ms. */
  phaseDelayMs: number;
  failedOver: boolean;
  /** From the fault to the acknowledgement of the first write committed by the new primary. */
  firstWriteOnNewPrimaryMs: number | null;
  /** The longest stretch without an acknowledged write, from the last one before the fault (`writeGap`). */
  writeGapMs: number | null;
  failedWrites: number;
  acknowledgedWrites: number;
  /** Acknowledged, yet absent from the new primary afterwards. */
  lostAcknowledgedWrites: number;
  /** Each lost write: its seq, when it was acknowledged (ms after the fault; negative: before) and by which node's port. */
  lost: { seq: number; ackedMsAfterFault: number; serverPort: number | undefined }[];
  /** Reported failed to the writer, yet committed on the new primary (the acknowledgement was lost). */
  failedButPresent: number;
  /** Acknowledged by the old primary after the fault signal was sent. */
  acknowledgedByOldPrimaryAfterFault: number;
  /** ms after the fault; null when it did not happen. */
  phases: {
    primarySuspect: number | null;
    primaryDown: number | null;
    failoverStart: number | null;
    /** pgfloat asks the standby to promote (ALTER SYSTEM RESET, pg_reload_conf(), pg_promote(true)) and gets the answer. */
    promoteCalled: number | null;
    promoteReturned: number | null;
    failoverComplete: number | null;
  };
  blocked: string[];
  errors: Record<string, number>;
  log: LogEvent[];
}

export interface QuietCheck {
  profile: Profile;
  seconds: number;
  pgbench: string;
  pgbenchTps: number | null;
  failovers: number;
  primarySuspect: number;
  primaryDown: number;
  writesHeld: number;
  blocked: string[];
  writes: number;
  failedWrites: number;
  maxWriteMs: number;
  log: LogEvent[];
}

/** How the tables show a figure per run ("none": it did not happen), the list of them, and their median. */
export const fmt = (v: number | null): string => (v === null ? 'none' : String(Math.round(v)));
export const list = (values: (number | null)[]): string => values.map(fmt).join(', ');
export const med = (values: (number | null)[]): string => {
  const m = medianOfKnown(values);
  return m === null ? 'n/a' : String(Math.round(m));
};

export const diff = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : a - b);

function groups(runs: FaultRun[]): FaultRun[][] {
  const byKey = new Map<string, FaultRun[]>();
  for (const r of runs) byKey.set(`${r.profile}/${r.fault}`, [...(byKey.get(`${r.profile}/${r.fault}`) ?? []), r]);
  return [...byKey.values()];
}

export function summaryTable(runs: FaultRun[], profiles: Profile[]): string {
  const lines = [
    '| profile | fault | time to first write on new primary, ms: median (runs) | failed writes: median (runs) | lost acknowledged writes: median (runs) | runs (failed over) |',
    '|---|---|---|---|---|---|',
  ];
  for (const g of groups(runs)) {
    const p = profiles.find((x) => x.name === g[0].profile)!;
    const first = g.map((r) => r.firstWriteOnNewPrimaryMs);
    const failed = g.map((r) => r.failedWrites);
    const lost = g.map((r) => r.lostAcknowledgedWrites);
    lines.push(
      `| ${p.name} (${p.intervalMs}/${p.timeoutMs}/${p.failuresBeforeDown}) | ${g[0].fault} | ${med(first)} (${list(first)}) | ${med(failed)} (${list(failed)}) | ${med(lost)} (${list(lost)}) | ${g.length} (${g.filter((r) => r.failedOver).length}) |`,
    );
  }
  return lines.join('\n');
}

export function phaseTable(runs: FaultRun[]): string {
  const lines = [
    '| profile | fault | primary down | failover start | pg_promote() took | failover complete | first write on new primary | blocked on (pgfloat log) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const g of groups(runs)) {
    const blocked = [...new Set(g.flatMap((r) => r.blocked))].map((b) => b.replace(/\|/g, '/'));
    lines.push(
      `| ${g[0].profile} | ${g[0].fault} | ${med(g.map((r) => r.phases.primaryDown))} | ${med(g.map((r) => r.phases.failoverStart))} | ` +
        `${med(g.map((r) => diff(r.phases.promoteReturned, r.phases.promoteCalled)))} (${list(g.map((r) => diff(r.phases.promoteReturned, r.phases.promoteCalled)))}) | ` +
        `${med(g.map((r) => r.phases.failoverComplete))} | ${med(g.map((r) => r.firstWriteOnNewPrimaryMs))} | ${blocked.join('; ') || '-'} |`,
    );
  }
  return lines.join('\n');
}

export function checkTable(checks: QuietCheck[]): string {
  const lines = [
    '| settings | seconds | pgbench tps | failovers | primary suspect / down | writes held | writes (failed) | slowest write, ms |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const c of checks) {
    const p = c.profile;
    lines.push(
      `| ${p.intervalMs}/${p.timeoutMs}/${p.failuresBeforeDown} | ${c.seconds} | ${fmt(c.pgbenchTps)} | ${c.failovers} | ${c.primarySuspect} / ${c.primaryDown} | ${c.writesHeld} | ${c.writes} (${c.failedWrites}) | ${c.maxWriteMs} |`,
    );
  }
  return lines.join('\n');
}

/** The results without pgfloat's log lines of each run: the figures and tables, small enough to commit. */
export function failoverSummary<Doc extends { falseFailoverChecks: { log: unknown }[]; runs: { log: unknown }[]; instanceRuns: { log: unknown }[] }>(doc: Doc): Omit<Doc, 'falseFailoverChecks' | 'runs' | 'instanceRuns'> & Record<'falseFailoverChecks' | 'runs' | 'instanceRuns', object[]> {
  const withoutLog = ({ log: _log, ...rest }: { log: unknown }): object => rest;
  return { ...doc, falseFailoverChecks: doc.falseFailoverChecks.map(withoutLog), runs: doc.runs.map(withoutLog), instanceRuns: doc.instanceRuns.map(withoutLog) };
}
