// Markdown tables of the three-instance failover runs, side by side with the single instance's runs of the same bench run.

import { medianOfKnown } from '../lib/stats';
import type { InstanceRun } from './instances';
import { diff, fmt, list, med, type FaultRun } from './report';

const known = (values: (number | null)[]): number[] => values.filter((v): v is number => v !== null);
const cell = (values: (number | null)[]): string => `${med(values)} (${list(values)})`;
const maxOf = (values: (number | null)[]): number | null => (known(values).length === 0 ? null : Math.max(...known(values)));

export const setupName = (members: 1 | 3): string => `3 instances, ${members}-member etcd`;

/** "+120 ms (x1.10)": the instances' median against the single instance's, both from this bench run. */
function versus(mine: (number | null)[], single: (number | null)[]): string {
  const [a, b] = [medianOfKnown(mine), medianOfKnown(single)];
  if (a === null || b === null || b === 0) return 'n/a';
  const delta = Math.round(a - b);
  return `${delta >= 0 ? '+' : ''}${delta} ms (x${(a / b).toFixed(2)})`;
}

function groups(runs: InstanceRun[]): InstanceRun[][] {
  const byKey = new Map<string, InstanceRun[]>();
  for (const r of runs) byKey.set(`${r.etcdMembers}/${r.fault}`, [...(byKey.get(`${r.etcdMembers}/${r.fault}`) ?? []), r]);
  return [...byKey.values()];
}

const PRIMARY_FAULTS = ['sigkill', 'sigstop'] as const;

/** Primary faults: one row for the single instance (default profile), one per etcd size, per fault. */
export function instanceSummaryTable(single: FaultRun[], runs: InstanceRun[]): string {
  const lines = [
    '| pgfloat | fault | fault to first write on new primary, writer 1 (instance 1 first), ms: median (runs) | vs one instance, this bench run | slowest of the 3 writers, ms: median (runs) | failed writes, writer 1: median (runs) | lost acknowledged writes, all writers: median (runs) | runs (failed over) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const fault of PRIMARY_FAULTS) {
    const one = single.filter((r) => r.profile === 'default' && r.fault === fault);
    const baseline = one.map((r) => r.firstWriteOnNewPrimaryMs);
    if (one.length > 0) {
      lines.push(
        `| 1 instance, file state | ${fault} | ${cell(baseline)} | - | - | ${cell(one.map((r) => r.failedWrites))} | ${cell(one.map((r) => r.lostAcknowledgedWrites))} | ${one.length} (${one.filter((r) => r.failedOver).length}) |`,
      );
    }
    for (const g of groups(runs.filter((r) => r.fault === fault))) {
      const first = g.map((r) => r.firstWriteOnNewPrimaryMs);
      const slowest = g.map((r) => maxOf(r.writers.map((w) => w.firstWriteOnNewPrimaryMs)));
      lines.push(
        `| ${setupName(g[0]!.etcdMembers)} | ${fault} | ${cell(first)} | ${one.length > 0 ? versus(first, baseline) : 'n/a'} | ${cell(slowest)} | ` +
          `${cell(g.map((r) => r.writers[0]!.failedWrites))} | ${cell(g.map((r) => r.lostAcknowledgedWrites))} | ${g.length} (${g.filter((r) => r.failedOver).length}) |`,
      );
    }
  }
  return lines.join('\n');
}

/** SIGKILL of the decider: the write gap of the writers whose connection went through it, and of the others. */
export function deciderTable(runs: InstanceRun[]): string {
  const lines = [
    '| pgfloat | fault | write gap, writers through the killed decider, ms: median (runs) | write gap, writers through the other instances, ms: median (runs) | ' +
      "the others' gap began, ms after the fault (runs) | longest gap in the 1.5 s before the fault, any writer (runs) | failed writes, all writers: median (runs) | " +
      'lost acknowledged writes: median (runs) | new decider after, ms: median (runs) | failovers (epochs at the end) | refusing at the end |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const g of groups(runs.filter((r) => r.fault === 'decider-kill'))) {
    const through = g.map((r) => maxOf(r.writers.filter((w) => w.viaAtFault === r.decider).map((w) => w.writeGapMs)));
    const worstOther = (r: InstanceRun) =>
      r.writers.filter((w) => w.viaAtFault !== r.decider).reduce<InstanceRun['writers'][number] | undefined>((a, w) => (a === undefined || (w.writeGapMs ?? 0) > (a.writeGapMs ?? 0) ? w : a), undefined);
    const others = g.map((r) => worstOther(r)?.writeGapMs ?? null);
    const began = g.map((r) => worstOther(r)?.writeGapStartMs ?? null);
    const noise = g.map((r) => maxOf(r.writers.map((w) => w.gapBeforeFaultMs)));
    const epochs = [...new Set(g.flatMap((r) => Object.values(r.epochs).map(fmt)))].join('/');
    const refusing = g.flatMap((r) => r.refusingAtEnd.map((x) => `run ${r.run} ${x}`)).map((x) => x.replace(/\|/g, '/'));
    lines.push(
      `| ${setupName(g[0]!.etcdMembers)} | decider-kill | ${cell(through)} | ${cell(others)} | ${list(began)} | ${list(noise)} | ${cell(g.map((r) => r.failedWrites))} | ` +
        `${cell(g.map((r) => r.lostAcknowledgedWrites))} | ${cell(g.map((r) => r.newDeciderMs))} | ${g.reduce((n, r) => n + r.failovers, 0)} (${epochs}) | ${refusing.join('; ') || 'none'} |`,
    );
  }
  return lines.join('\n');
}

/** Median ms after the fault: detection, the wait for the other instances, promotion, routing on every instance. */
export function instancePhaseTable(single: FaultRun[], runs: InstanceRun[]): string {
  const lines = [
    '| pgfloat | fault | primary down (the deciding instance) | failover start | waiting for the instances to drop their sessions | pg_promote() took | failover complete | last instance routing to the new primary | first write, writer 1 / slowest writer | blocked on (pgfloat logs) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const fault of PRIMARY_FAULTS) {
    const one = single.filter((r) => r.profile === 'default' && r.fault === fault);
    if (one.length > 0) {
      const p = one.map((r) => r.phases);
      const blocked = [...new Set(one.flatMap((r) => r.blocked))].map((b) => b.replace(/\|/g, '/'));
      lines.push(
        `| 1 instance | ${fault} | ${med(p.map((x) => x.primaryDown))} | ${med(p.map((x) => x.failoverStart))} | - | ${med(p.map((x) => diff(x.promoteReturned, x.promoteCalled)))} | ` +
          `${med(p.map((x) => x.failoverComplete))} | - | ${med(one.map((r) => r.firstWriteOnNewPrimaryMs))} / - | ${blocked.join('; ') || '-'} |`,
      );
    }
    for (const g of groups(runs.filter((r) => r.fault === fault))) {
      const p = g.map((r) => r.phases);
      const blocked = [...new Set(g.flatMap((r) => r.blocked))].map((b) => b.replace(/\|/g, '/'));
      const waited = p.map((x) => diff(x.promoteCalled, x.acknowledgingStart ?? x.promoteCalled));
      const lastRouted = g.map((r) => (Object.values(r.phases.routedToNewBy).includes(null) ? null : maxOf(Object.values(r.phases.routedToNewBy))));
      const slowest = g.map((r) => maxOf(r.writers.map((w) => w.firstWriteOnNewPrimaryMs)));
      lines.push(
        `| ${setupName(g[0]!.etcdMembers)} | ${fault} | ${med(p.map((x) => x.primaryDown))} | ${med(p.map((x) => x.failoverStart))} | ${cell(waited)} | ` +
          `${med(p.map((x) => diff(x.promoteReturned, x.promoteCalled)))} | ${med(p.map((x) => x.failoverComplete))} | ${cell(lastRouted)} | ` +
          `${med(g.map((r) => r.firstWriteOnNewPrimaryMs))} / ${med(slowest)} | ${blocked.join('; ') || '-'} |`,
      );
    }
  }
  return lines.join('\n');
}
