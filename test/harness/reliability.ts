// One reliability scenario: a cluster, pgfloat with its log captured, history writers, and the check at the end (recorded for the README table).

import { appendFileSync, mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { LocalCluster, LocalClusterOptions } from '../../src/sandbox/local-cluster';
import { startCluster, type Teardown } from './cluster';
import { checkHistory, describeReport, type CheckedNode, type HistoryReport, type InstanceLog } from './history-check';
import { createHistoryTable, startHistoryWriters, type HistoryLog, type HistoryWriters, type WriterOptions } from './history';
import { captureLog, type CapturedLog } from './log-capture';
import { startPgfloatAt, stateDirFor, testWorkers, type ConfigOverrides, type NodeAddress, type RunningPgfloat } from './pgfloat';

/** Where scenario results go (one JSON line each); `npm run report:reliability` renders them. */
export const RESULTS_FILE = process.env.PGFLOAT_RELIABILITY_RESULTS ?? resolve(__dirname, '../../../tmp/reliability-results.jsonl');

export interface ScenarioTest extends Teardown {
  comment(...message: unknown[]): void;
  same(found: unknown, wanted: unknown, message: string): boolean;
  passing(): boolean;
}

export interface ScenarioOptions {
  cluster?: Partial<LocalClusterOptions>;
  overrides?: ConfigOverrides;
  writers?: Partial<WriterOptions>;
  managed?: boolean;
  /** pgfloat's view of each node (a fault relay's port, say); the nodes themselves by default. */
  nodes?: (cluster: LocalCluster) => NodeAddress[] | Promise<NodeAddress[]>;
}

export interface Scenario {
  cluster: LocalCluster;
  proxy: RunningPgfloat;
  log: CapturedLog;
  writers: HistoryWriters;
  stateDir: string;
  /** Every node as the checker reads it: directly, never through pgfloat or a relay. */
  checked: CheckedNode[];
  /** Other pgfloat instances whose logs count (a restarted one), added by the test. */
  instances: InstanceLog[];
  /**
   * Stops the writers, reads every node, asserts the history holds no violation and records the
   * scenario; `finalPrimary` defaults to what pgfloat routes to.
   */
  finish(opts?: FinishOptions): Promise<HistoryReport>;
}

export interface FinishOptions {
  finalPrimary?: string;
  faultAt?: number;
  synchronous?: boolean;
  /** New connections may fail (no primary is left to hold them for); by default none may. */
  connectFailuresExpected?: boolean;
  allowDataLoss?: boolean;
}

export async function startScenario(t: ScenarioTest, name: string, opts: ScenarioOptions = {}): Promise<Scenario> {
  const cluster = await startCluster(t, opts.cluster);
  const log = captureLog('info');
  const stateDir = stateDirFor(t);
  const nodes = (await opts.nodes?.(cluster)) ?? cluster.nodes;
  const proxy = await startPgfloatAt(t, nodes, stateDir, opts.overrides ?? {}, { log: log.logger, managed: opts.managed });
  await createHistoryTable(proxy.readWriteUrl());
  const writers = startHistoryWriters(proxy.readWriteUrl(), { clients: 4, pauseMs: 5, queryTimeoutMs: 5000, ...opts.writers });
  t.teardown(() => writers.stop());
  await writers.acked(50);
  const checked: CheckedNode[] = cluster.nodes.map((n) => ({ name: n.name, port: n.port, connectionString: () => n.connectionString() }));
  const instances: InstanceLog[] = [{ name: 'pgfloat', lines: [] }];
  const scenario: Scenario = {
    cluster,
    proxy,
    log,
    writers,
    stateDir,
    checked,
    instances,
    finish: async (finish = {}) => {
      const history = await writers.stop();
      instances[0]!.lines = log.lines();
      const finalPrimary = finish.finalPrimary ?? proxy.instance.status().primary;
      if (finalPrimary === null) throw new Error('no primary at the end of the scenario');
      return judge(t, name, history, checked, finalPrimary, instances, { ...finish, maxLagBytes: proxy.config.failover.maxLagBytes });
    },
  };
  return scenario;
}

/** Checks a finished history, asserts it is clean, and records the scenario's line for the README table. */
export async function judge(
  t: ScenarioTest,
  name: string,
  history: HistoryLog,
  checked: readonly CheckedNode[],
  finalPrimary: string,
  instances: readonly InstanceLog[],
  finish: FinishOptions & { maxLagBytes: number },
): Promise<HistoryReport> {
  const report = await checkHistory(history, checked, finalPrimary, instances, {
    synchronous: finish.synchronous ?? false,
    maxLagBytes: finish.maxLagBytes,
    faultAt: finish.faultAt,
    allowDataLoss: finish.allowDataLoss,
  });
  t.comment(`${name}: ${describeReport(report)}`);
  if (history.connectFailures.length > 0) t.comment(`failed connects: ${JSON.stringify(history.connectFailures.slice(0, 3))}`);
  t.same(report.violations, [], 'the history holds no violation');
  if (!finish.connectFailuresExpected) t.same(history.connectFailures, [], 'no new connection failed: they were held');
  const workers = testWorkers();
  record({
    scenario: workers > 1 ? `${name}, relayed by ${workers} workers` : name,
    result: t.passing() ? 'pass' : 'FAIL',
    failoverMs: report.failoverMs ?? null,
    acknowledged: report.acked,
    lost: report.lost.length,
    failed: report.failed,
    unknown: report.unknown,
    failedConnects: report.connectFailures,
    fencedNodeRanQueued: report.unknownAfterFence.length,
    violations: report.violations,
  });
  return report;
}

function record(result: Record<string, unknown>): void {
  mkdirSync(join(RESULTS_FILE, '..'), { recursive: true });
  const file = basename(process.argv[1] ?? '').replace(/\.test\.js$/, '');
  appendFileSync(RESULTS_FILE, JSON.stringify({ ...result, file, at: new Date().toISOString() }) + '\n');
}
