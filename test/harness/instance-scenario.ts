// One multi-instance reliability scenario: a cluster, etcd, three pgfloat processes, history writers over all of them, and the judgement.

import type { Test } from 'tap';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { startCluster } from './cluster';
import { startEtcd, type EtcdCluster } from '../../src/sandbox/etcd-cluster';
import type { CheckedNode, HistoryReport } from './history-check';
import { createHistoryTable, startHistoryWriters, type HistoryWriters } from './history';
import { startInstanceGroup, type GroupOptions, type InstanceGroup } from './instances';
import { judge, type FinishOptions } from './reliability';

export interface InstanceScenario {
  cluster: LocalCluster;
  etcd: EtcdCluster;
  group: InstanceGroup;
  writers: HistoryWriters;
  /** Stops the writers and judges the history over every instance's log. */
  finish(finalPrimary: string, opts?: FinishOptions): Promise<HistoryReport>;
}

export async function startInstanceScenario(
  t: Test,
  name: string,
  opts: GroupOptions & { etcdMembers?: 1 | 3; nodes?: (cluster: LocalCluster) => Promise<GroupOptions['nodesFor']> } = {},
): Promise<InstanceScenario> {
  const [cluster, etcd] = await Promise.all([startCluster(t), startEtcd(t, { members: opts.etcdMembers ?? 1 })]);
  const nodesFor = await opts.nodes?.(cluster);
  const group = await startInstanceGroup(t, cluster.nodes, etcd, { ...opts, nodesFor });
  await createHistoryTable(group.urls()[0]!);
  // Writers spread over the instances like a multi-host connection string; a refusal moves them on.
  const writers = startHistoryWriters(group.urls(), { clients: 6, pauseMs: 5, queryTimeoutMs: 5000, connectTimeoutMs: 15_000 });
  t.teardown(() => writers.stop());
  await writers.acked(60);
  const checked: CheckedNode[] = cluster.nodes.map((n) => ({ name: n.name, port: n.port, connectionString: () => n.connectionString() }));
  return {
    cluster,
    etcd,
    group,
    writers,
    finish: async (finalPrimary, finish = {}) => {
      await writers.acked(60);
      const history = await writers.stop();
      return judge(t, name, history, checked, finalPrimary, group.logs(), { maxLagBytes: 1024 * 1024, ...finish });
    },
  };
}
