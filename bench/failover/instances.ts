// The failover benchmark with three pgfloat instances over etcd: the same cluster, writers and faults as with one, plus SIGKILL of the decider alone.

import { join } from 'node:path';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { startEtcd } from '../../src/sandbox/etcd-cluster';
import { freePort } from '../../src/sandbox/ports';
import { Scope } from '../lib/cleanup';
import { FAULTS, inject, type FaultName } from '../lib/faults';
import { startPgfloat } from '../lib/pgfloat';
import type { Service } from '../lib/processes';
import type { Say } from '../lib/run-output';
import { longestGap } from '../lib/stats';
import { ackTimes, blockedReasons, firstT, healthChanges, readLog, writeGap, type LogEvent, type Profile } from './report';
import { errorCounts, openRunCluster, pgfloatConfig, seqsOn, waitUntil, type RunOptions } from './run';
import { Writer, type WriteAttempt } from './writer';

export type InstanceFault = FaultName | 'decider-kill';

export const INSTANCE_FAULTS: Record<InstanceFault, string> = {
  ...FAULTS,
  'decider-kill': 'SIGKILL of the decider pgfloat instance alone (no database fault)',
};

export const INSTANCE_NAMES = ['i1', 'i2', 'i3'];
const PREFIX = '/pgfloat/bench';
/** The log lines kept: the single-instance run's, and the etcd coordinator's (lease, election, watch). */
const COMPONENTS = new Set(['failover', 'monitor', 'router', 'etcd']);

interface Instance {
  name: string;
  port: number;
  adminPort: number;
  service: Service;
  logFile: string;
}

interface Status {
  epoch: number;
  primary: string | null;
  readWrite: string;
  coordination: { instance: string; decider: string | null; connected: boolean } | null;
  instances: unknown[] | null;
}

async function status(i: Instance): Promise<Status | undefined> {
  if (i.service.child.exitCode !== null || i.service.child.signalCode !== null) return undefined;
  return fetch(`http://127.0.0.1:${i.adminPort}/status`, { signal: AbortSignal.timeout(2000) }).then(
    (r) => r.json() as Promise<Status>,
    () => undefined,
  );
}

const live = (instances: Instance[]): Instance[] => instances.filter((i) => i.service.child.exitCode === null && i.service.child.signalCode === null);

/** The decider every live instance names, once they agree; undefined if they do not within `timeoutMs`. */
async function agreedDecider(instances: Instance[], timeoutMs: number, not?: string): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const views = await Promise.all(live(instances).map(status));
    const named = new Set(views.map((v) => v?.coordination?.decider ?? null));
    const [name] = [...named];
    if (named.size === 1 && name && name !== not && live(instances).some((i) => i.name === name)) return name;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface InstanceEnv {
  scope: Scope;
  cluster: LocalCluster;
  instances: Instance[];
}

/** A fresh cluster, a fresh etcd of `members`, three `pgfloat start` processes over it, all routing writes to n1. */
async function setUp(profile: Profile, members: 1 | 3, say: Say): Promise<InstanceEnv> {
  const scope = new Scope();
  try {
    const { dir, cluster } = await openRunCluster(scope, say);
    const etcd = await startEtcd(scope, { members, name: 'bench-etcd' });
    const endpoints = etcd.endpoints.map((e) => `"${e}"`).join(', ');
    const instances: Instance[] = [];
    // One at a time: the first one up takes the election, so i1 is the decider.
    for (const name of INSTANCE_NAMES) {
      const [port, adminPort] = [await freePort(), await freePort()];
      const state = `{ dir: "${join(dir, `state-${name}`)}", store: etcd, etcd: { endpoints: [${endpoints}], prefix: "${PREFIX}", instance: ${name} } }`;
      const config = pgfloatConfig(cluster, profile, port, adminPort, state);
      const { service, logFile } = await startPgfloat({ dir, name, config, port, logLevel: 'info', cleanup: (step) => scope.add(step) });
      instances.push({ name, port, adminPort, service, logFile });
    }
    const ready = await waitUntilAsync(async () => {
      const views = await Promise.all(instances.map(status));
      return views.every((v) => v?.primary === 'n1' && v.coordination?.connected === true && v.instances?.length === instances.length);
    }, 30_000);
    if (!ready) throw new Error(`the three instances did not all route writes to n1 within 30 s: ${JSON.stringify(await Promise.all(instances.map(status)))}`);
    return { scope, cluster, instances };
  } catch (err) {
    await scope.close();
    throw err;
  }
}

async function waitUntilAsync(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

export interface InstanceWriterResult {
  /** The instances in the order this writer's connections try them. */
  order: string[];
  /** The instance its connection went through when the fault came. */
  viaAtFault: string | null;
  /** The instance that carried its first acknowledged write after the fault. */
  viaAfter: string | null;
  firstWriteOnNewPrimaryMs: number | null;
  writeGapMs: number | null;
  /** When that longest stretch began, ms after the fault (negative: the last acknowledgement before it). */
  writeGapStartMs: number | null;
  /** The longest stretch between acknowledgements in the 1.5 s before the fault: the machine's noise. */
  gapBeforeFaultMs: number;
  failedWrites: number;
  acknowledgedWrites: number;
  lostAcknowledgedWrites: number;
}

export interface InstanceRun {
  etcdMembers: 1 | 3;
  fault: InstanceFault;
  run: number;
  /** The random wait added to the warm-up (`RunOptions.randomPhase`), ms. */
  phaseDelayMs: number;
  /** The decider when the fault came, and the one the survivors agreed on at the end. */
  decider: string;
  deciderAfter: string | null;
  /** ms from the fault to a surviving instance's "this instance is now the decider". */
  newDeciderMs: number | null;
  /** "failover: starting" lines over every instance's log after the fault. */
  failovers: number;
  failedOver: boolean;
  /** Each live instance's epoch and read-write routing (`/status`) at the end. */
  epochs: Record<string, number | null>;
  refusingAtEnd: string[];
  /** Writer 1 (instance 1 first): the figures compared with the single instance's one writer. */
  firstWriteOnNewPrimaryMs: number | null;
  writeGapMs: number | null;
  writers: InstanceWriterResult[];
  /** Over every writer. */
  failedWrites: number;
  lostAcknowledgedWrites: number;
  lost: { seq: number; ackedMsAfterFault: number; serverPort: number | undefined }[];
  failedButPresent: number;
  acknowledgedByOldPrimaryAfterFault: number;
  /** ms after the fault, from the log of the instance that ran the failover (or the first decider). */
  phases: {
    primaryDown: number | null;
    /** When each instance saw the primary down. */
    primaryDownBy: Record<string, number | null>;
    failoverStart: number | null;
    acknowledgingStart: number | null;
    promoteCalled: number | null;
    promoteReturned: number | null;
    failoverComplete: number | null;
    /** When each live instance's router first routed writes to the new primary. */
    routedToNewBy: Record<string, number | null>;
  };
  blocked: string[];
  errors: Record<string, number>;
  log: (LogEvent & { instance: string })[];
}

const rotate = <T>(list: readonly T[], k: number): T[] => [...list.slice(k), ...list.slice(0, k)];

/**
 * Three writers, writer k trying the instances from k on (libpq's host=a,b,c with its hosts spread,
 * as load_balance_hosts would), warm-up, the fault, then writes until every writer has settleWrites
 * on the new primary (a primary fault), or until the survivors agree on a new decider and
 * `deciderSettleMs` more have passed (decider-kill).
 */
export async function instanceRun(
  profile: Profile,
  members: 1 | 3,
  fault: InstanceFault,
  run: number,
  opts: RunOptions & { deciderSettleMs: number },
  say: Say,
): Promise<InstanceRun> {
  const { scope, cluster, instances } = await setUp(profile, members, () => undefined);
  const [oldPrimary, standby] = cluster.nodes;
  try {
    const writers = instances.map((_, k) => {
      const order = rotate(instances, k);
      const writer = new Writer({ ports: order.map((i) => i.port), seqBase: (k + 1) * 10_000_000, periodMs: opts.periodMs, reconnectPauseMs: opts.reconnectPauseMs });
      writer.start();
      scope.add(() => writer.stop());
      return { writer, order };
    });
    const phaseDelayMs = opts.randomPhase ? Math.round(Math.random() * profile.intervalMs) : 0;
    await new Promise((r) => setTimeout(r, opts.warmupMs + phaseDelayMs));
    for (const [k, { writer }] of writers.entries()) {
      const before = writer.acknowledged().length;
      if (before < 10) throw new Error(`writer ${k + 1}: only ${before} writes acknowledged in the ${opts.warmupMs} ms warm-up: ${JSON.stringify(errorCounts(writer.attempts))}`);
    }
    const decider = (await agreedDecider(instances, 5000)) ?? 'none';
    const viaAtFault = writers.map(({ writer, order }) => {
      const last = writer.attempts.at(-1);
      return last?.via === undefined ? null : order[last.via]!.name;
    });

    let at: number;
    const onNew = (w: Writer): WriteAttempt[] => w.attempts.filter((a) => a.ok && a.serverPort === standby.port && a.endedAt >= at);
    let deciderAfter: string | undefined;
    if (fault === 'decider-kill') {
      const victim = instances.find((i) => i.name === decider);
      if (victim === undefined) throw new Error('the instances did not agree on a decider before the fault');
      at = Date.now();
      victim.service.child.kill('SIGKILL');
      deciderAfter = await agreedDecider(instances, opts.timeoutMs, victim.name);
      if (deciderAfter === undefined) say(`  the surviving instances agreed on no new decider within ${opts.timeoutMs} ms`);
      const since = Date.now();
      await waitUntil(
        () => Date.now() - since >= opts.deciderSettleMs && writers.every(({ writer }) => writer.attempts.filter((a) => a.ok && a.endedAt >= at).length >= opts.settleWrites),
        opts.timeoutMs,
      );
    } else {
      const injected = inject(fault, oldPrimary);
      scope.add(() => injected.undo());
      at = injected.at;
      const settled = await waitUntil(() => writers.every(({ writer }) => onNew(writer).length >= opts.settleWrites), opts.timeoutMs);
      if (!settled) say(`  not every writer had ${opts.settleWrites} writes on ${standby.name} within ${opts.timeoutMs} ms of the fault`);
      deciderAfter = await agreedDecider(instances, 2000);
    }
    await Promise.all(writers.map(({ writer }) => writer.stop()));

    const finalViews = new Map(await Promise.all(live(instances).map(async (i) => [i.name, await status(i)] as const)));
    const log = instances.flatMap((i) => readLog(i.logFile, at, COMPONENTS).map((e) => ({ ...e, instance: i.name })));
    log.sort((a, b) => a.t - b.t);
    const after = log.filter((e) => e.t >= 0);
    const failedOver = after.some((e) => e.msg.startsWith('failover: complete') && e.fields.newPrimary === standby.name);
    const finalPrimary = failedOver ? standby : oldPrimary;
    const present = await seqsOn(finalPrimary.connectionString());

    const results = writers.map(({ writer, order }, k): InstanceWriterResult & { lost: InstanceRun['lost'] } => {
      const acked = writer.acknowledged();
      const lost = acked.filter((a) => !present.has(a.seq)).map((a) => ({ seq: a.seq, ackedMsAfterFault: a.endedAt - at, serverPort: a.serverPort }));
      const firstAfter = acked.find((a) => a.endedAt >= at);
      const first = onNew(writer)[0];
      return {
        order: order.map((i) => i.name),
        viaAtFault: viaAtFault[k]!,
        viaAfter: firstAfter?.via === undefined ? null : order[firstAfter.via]!.name,
        firstWriteOnNewPrimaryMs: fault === 'decider-kill' || first === undefined ? null : first.endedAt - at,
        writeGapMs: writeGap(writer.attempts, at),
        writeGapStartMs: writeGap(writer.attempts, at) === null ? null : longestGap(ackTimes(writer.attempts), at, Infinity).start - at,
        gapBeforeFaultMs: longestGap(ackTimes(writer.attempts).filter((a) => a.at < at), at - 1500, at).ms,
        failedWrites: writer.attempts.filter((a) => !a.ok).length,
        acknowledgedWrites: acked.length,
        lostAcknowledgedWrites: lost.length,
        lost,
      };
    });
    const all = writers.flatMap(({ writer }) => writer.attempts);
    const ranIt = after.find((e) => e.msg === 'failover: starting')?.instance ?? decider;
    const by = (name: string): LogEvent[] => after.filter((e) => e.instance === name);
    const mine = by(ranIt);
    const perInstance = (f: (events: LogEvent[]) => number | null): Record<string, number | null> =>
      Object.fromEntries(instances.map((i) => [i.name, f(by(i.name))]));
    return {
      etcdMembers: members,
      fault,
      run,
      phaseDelayMs,
      decider,
      deciderAfter: deciderAfter ?? null,
      newDeciderMs: fault === 'decider-kill' ? firstT(after.filter((e) => e.instance !== decider), (e) => e.msg === 'this instance is now the decider') : null,
      failovers: after.filter((e) => e.msg === 'failover: starting').length,
      failedOver,
      epochs: Object.fromEntries([...finalViews].map(([name, v]) => [name, v?.epoch ?? null])),
      refusingAtEnd: [...finalViews].filter(([, v]) => v?.readWrite !== 'routing').map(([name, v]) => `${name}: ${v?.readWrite ?? 'no /status answer'}`),
      firstWriteOnNewPrimaryMs: results[0]!.firstWriteOnNewPrimaryMs,
      writeGapMs: results[0]!.writeGapMs,
      writers: results.map(({ lost: _lost, ...r }) => r),
      failedWrites: all.filter((a) => !a.ok).length,
      lostAcknowledgedWrites: results.reduce((n, r) => n + r.lostAcknowledgedWrites, 0),
      lost: results.flatMap((r) => r.lost),
      failedButPresent: all.filter((a) => !a.ok && present.has(a.seq)).length,
      acknowledgedByOldPrimaryAfterFault:
        fault === 'decider-kill' ? 0 : all.filter((a) => a.ok && a.serverPort === oldPrimary.port && a.endedAt >= at).length,
      phases: {
        primaryDown: healthChanges(mine, oldPrimary.name, 'down')[0]?.t ?? null,
        primaryDownBy: perInstance((events) => healthChanges(events, oldPrimary.name, 'down')[0]?.t ?? null),
        failoverStart: firstT(mine, (e) => e.msg === 'failover: starting'),
        acknowledgingStart: firstT(mine, (e) => e.msg.startsWith('failover: waiting for every pgfloat instance')),
        promoteCalled: firstT(mine, (e) => e.msg.startsWith('failover: old primary fenced, promoting')),
        promoteReturned: firstT(mine, (e) => e.msg.startsWith('failover: pg_promote() returned')),
        failoverComplete: firstT(mine, (e) => e.msg.startsWith('failover: complete')),
        routedToNewBy: perInstance((events) => firstT(events, (e) => e.msg === 'routing changed' && e.fields.primary === standby.name)),
      },
      blocked: [...new Set(instances.flatMap((i) => blockedReasons(by(i.name)).map((b) => `${i.name}: ${b}`)))],
      errors: errorCounts(all),
      log: log.filter((e) => e.t >= -1000),
    };
  } finally {
    await scope.close();
  }
}
