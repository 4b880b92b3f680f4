// One failover-benchmark run: a fresh cluster, pgfloat as its own process, the writer, then a fault (or only load) and the tally.

import { join } from 'node:path';
import { Client } from 'pg';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { freePort } from '../../src/sandbox/ports';
import { Scope } from '../lib/cleanup';
import { benchDir, openCluster, runOnPrimary } from '../lib/cluster';
import { inject, type FaultName } from '../lib/faults';
import { initialize, runWorkload } from '../lib/pgbench';
import { nodesYaml, startPgfloat } from '../lib/pgfloat';
import type { Say } from '../lib/run-output';
import { blockedReasons, firstT, healthChanges, readLog, writeGap, type FaultRun, type Profile, type QuietCheck } from './report';
import { CREATE_TABLE, Writer, type WriteAttempt } from './writer';

export interface RunOptions {
  periodMs: number;
  reconnectPauseMs: number;
  /** Writes acknowledged before the fault. */
  warmupMs: number;
  /**
   * Wait a further random 0..monitor.intervalMs before the fault. Without it the fault lands at
   * about the same point of pgfloat's heartbeat cycle in every run (a fixed time after its start),
   * which biases what depends on that phase (a hung primary's detection).
   */
  randomPhase: boolean;
  /** Give up waiting for writes on the new primary after this long. */
  timeoutMs: number;
  /** Writes acknowledged by the new primary before the writer stops. */
  settleWrites: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Env {
  scope: Scope;
  cluster: LocalCluster;
  pgfloatPort: number;
  logFile: string;
}

/** A temp dir and a fresh cluster with the writers' table, both removed when `scope` closes. */
export async function openRunCluster(scope: Scope, say: Say): Promise<{ dir: string; cluster: LocalCluster }> {
  const cleanup = (step: () => unknown): void => scope.add(step);
  const dir = benchDir('failover', cleanup);
  const cluster = await openCluster(dir, cleanup, { log: say });
  await runOnPrimary(cluster, [CREATE_TABLE]);
  return { dir, cluster };
}

/** The config of a benchmark pgfloat: the cluster's nodes, the monitor profile, info logs; `state` is the YAML of the state section. */
export function pgfloatConfig(cluster: LocalCluster, profile: Profile, port: number, adminPort: number | null, state: string): string {
  const { intervalMs, timeoutMs, failuresBeforeDown } = profile;
  return [
    `listen: { readWrite: "127.0.0.1:${port}", readOnly: null }`,
    `admin: { listen: ${adminPort === null ? 'null' : `"127.0.0.1:${adminPort}"`} }`,
    ...nodesYaml(cluster.nodes),
    `monitor: { intervalMs: ${intervalMs}, timeoutMs: ${timeoutMs}, failuresBeforeDown: ${failuresBeforeDown} }`,
    `state: ${state}`,
    'log: { level: info }',
    '',
  ].join('\n');
}

async function setUp(profile: Profile, say: Say): Promise<Env> {
  const scope = new Scope();
  try {
    const { dir, cluster } = await openRunCluster(scope, say);
    const pgfloatPort = await freePort();
    const config = pgfloatConfig(cluster, profile, pgfloatPort, null, `{ dir: "${join(dir, 'state')}" }`);
    const { logFile } = await startPgfloat({ dir, name: 'pgfloat', config, port: pgfloatPort, logLevel: 'info', cleanup: (step) => scope.add(step) });
    return { scope, cluster, pgfloatPort, logFile };
  } catch (err) {
    await scope.close();
    throw err;
  }
}

export async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

export async function seqsOn(connectionString: string): Promise<Set<number>> {
  const client = new Client({ connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ seq: string }>('select seq from failover_writes');
    return new Set(rows.map((r) => Number(r.seq)));
  } finally {
    await client.end();
  }
}

export function errorCounts(attempts: WriteAttempt[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of attempts) if (!a.ok) counts[a.error ?? 'unknown'] = (counts[a.error ?? 'unknown'] ?? 0) + 1;
  return counts;
}

/** Writer, warm-up, fault on the primary, then writes until the new primary has acknowledged settleWrites of them. */
export async function faultRun(profile: Profile, fault: FaultName, run: number, opts: RunOptions, say: Say): Promise<FaultRun> {
  const env = await setUp(profile, () => undefined);
  const { cluster, scope } = env;
  const [oldPrimary, standby] = cluster.nodes;
  try {
    const writer = new Writer({ ports: [env.pgfloatPort], periodMs: opts.periodMs, reconnectPauseMs: opts.reconnectPauseMs });
    writer.start();
    scope.add(() => writer.stop());
    const phaseDelayMs = opts.randomPhase ? Math.round(Math.random() * profile.intervalMs) : 0;
    await sleep(opts.warmupMs + phaseDelayMs);
    const before = writer.acknowledged().length;
    if (before < 10) throw new Error(`only ${before} writes acknowledged in the ${opts.warmupMs} ms warm-up: ${JSON.stringify(errorCounts(writer.attempts))}`);

    const injected = inject(fault, oldPrimary);
    scope.add(() => injected.undo());
    const onNew = (): WriteAttempt[] => writer.attempts.filter((a) => a.ok && a.serverPort === standby.port && a.endedAt >= injected.at);
    const settled = await waitUntil(() => onNew().length >= opts.settleWrites, opts.timeoutMs);
    await writer.stop();
    if (!settled) say(`  no ${opts.settleWrites} writes on ${standby.name} within ${opts.timeoutMs} ms of the fault`);

    const present = await seqsOn(standby.connectionString());
    const log = readLog(env.logFile, injected.at);
    const acked = writer.acknowledged();
    const lost = acked.filter((a) => !present.has(a.seq)).map((a) => ({ seq: a.seq, ackedMsAfterFault: a.endedAt - injected.at, serverPort: a.serverPort }));
    const first = onNew()[0];
    const failed = writer.attempts.filter((a) => !a.ok);
    const oldName = oldPrimary.name;
    return {
      profile: profile.name,
      fault,
      run,
      phaseDelayMs,
      failedOver: log.some((e) => e.msg.startsWith('failover: complete') && e.fields.newPrimary === standby.name),
      firstWriteOnNewPrimaryMs: first ? first.endedAt - injected.at : null,
      writeGapMs: writeGap(writer.attempts, injected.at),
      failedWrites: failed.length,
      acknowledgedWrites: acked.length,
      lostAcknowledgedWrites: lost.length,
      lost,
      failedButPresent: failed.filter((a) => present.has(a.seq)).length,
      acknowledgedByOldPrimaryAfterFault: acked.filter((a) => a.serverPort === oldPrimary.port && a.endedAt >= injected.at).length,
      phases: {
        primarySuspect: healthChanges(log, oldName, 'suspect').find((e) => e.t >= 0)?.t ?? null,
        primaryDown: healthChanges(log, oldName, 'down').find((e) => e.t >= 0)?.t ?? null,
        failoverStart: firstT(log, (e) => e.msg === 'failover: starting'),
        promoteCalled: firstT(log, (e) => e.msg.startsWith('failover: old primary fenced, promoting')),
        promoteReturned: firstT(log, (e) => e.msg.startsWith('failover: pg_promote() returned')),
        failoverComplete: firstT(log, (e) => e.msg.startsWith('failover: complete')),
      },
      blocked: blockedReasons(log.filter((e) => e.t >= 0)),
      errors: errorCounts(writer.attempts),
      log: log.filter((e) => e.t >= -1000),
    };
  } finally {
    await scope.close();
  }
}

/** No fault: the writer through pgfloat plus `pgbench -S -c 8` straight at the primary; did pgfloat fail over anyway? */
export async function quietCheck(profile: Profile, seconds: number, opts: RunOptions, say: Say): Promise<QuietCheck> {
  const env = await setUp(profile, () => undefined);
  const { cluster, scope } = env;
  try {
    say(`  pgbench -i -s 10 on the primary`);
    await initialize(cluster.primary.port, 10);
    const writer = new Writer({ ports: [env.pgfloatPort], periodMs: opts.periodMs, reconnectPauseMs: opts.reconnectPauseMs });
    const startedAt = Date.now();
    writer.start();
    scope.add(() => writer.stop());
    const workload = { name: '-S -n -c 8 -j 2', args: ['-S', '-n', '-c', '8', '-j', '2'] };
    let tps: number | null = null;
    try {
      tps = (await runWorkload(workload, cluster.primary.port, seconds)).tps;
    } catch (err) {
      say(`  pgbench: ${(err as Error).message.split('\n')[0]}`); // a failover would make it fail
    }
    await writer.stop();
    const log = readLog(env.logFile, startedAt).filter((e) => e.t >= 0);
    const name = cluster.primary.name;
    return {
      profile,
      seconds,
      pgbench: `pgbench ${workload.name} -T ${seconds}, directly on the primary`,
      pgbenchTps: tps,
      failovers: log.filter((e) => e.msg === 'failover: starting').length,
      primarySuspect: healthChanges(log, name, 'suspect').length,
      primaryDown: healthChanges(log, name, 'down').length,
      writesHeld: log.filter((e) => e.msg === 'holding new read-write clients').length,
      blocked: blockedReasons(log),
      writes: writer.attempts.length,
      failedWrites: writer.attempts.filter((a) => !a.ok).length,
      maxWriteMs: Math.max(0, ...writer.attempts.map((a) => a.endedAt - a.startedAt)),
      log: log.filter((e) => e.component !== 'router' || e.msg !== 'routing changed'),
    };
  } finally {
    await scope.close();
  }
}
