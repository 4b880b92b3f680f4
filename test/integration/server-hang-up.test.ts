// A primary that takes a connection and hangs up before answering (a server going away with connections in its listen backlog): a new read-write client is routed again, as after a refused connection, instead of failing.

import t from 'tap';
import { queryOnce } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { FaultRelay } from '../harness/fault-relay';
import { startPgfloatAt, stateDirFor } from '../harness/pgfloat';
import { eventually } from '../harness/waiting';

t.test('a read-write client whose server hangs up before a word waits for routing and gets a session', async (t) => {
  const cluster = await startCluster(t);
  const link = await FaultRelay.start(t, cluster.primary.port);
  const nodes = [{ ...cluster.nodes[0]!, port: link.port }, cluster.nodes[1]!];
  // No failover: the node stays the primary, so the client can only be saved by trying it again.
  const proxy = await startPgfloatAt(t, nodes, stateDirFor(t), { failover: { enabled: false } });
  t.same(await queryOnce(proxy.readWriteUrl(), 'select 1 as n'), [{ n: 1 }]);

  await link.set('hang-up');
  const connecting = queryOnce<{ port: number }>(proxy.readWriteUrl(), 'select inet_server_port() as port');
  await eventually(() => proxy.instance.status().reroutingClients === 1, 'the client to wait for routing after the hang-up');
  await link.set('pass');
  t.same(await connecting, [{ port: cluster.primary.port }], 'then it gets its session on the primary, never having seen an error');
});
