// pgfloat restarts after a failover while the old primary is back up as a stale primary: the persisted state, not the servers' claims, decides.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectClient, type ObservedClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { clientBackendCount, crashServer, metricValue, nodeStatus, serverPortOf, startPgfloatAt, stateDirFor, tryQuery } from '../harness/faults';
import { eventually } from '../harness/pgfloat';

t.test('a new pgfloat instance over the state of one that failed over', async (t) => {
  const cluster = await startCluster(t);
  const stateDir = stateDirFor(t);
  const first = await startPgfloatAt(t, cluster.nodes, stateDir);
  const n2Port = cluster.standby.port;

  const setup = await connectClient(first.readWriteUrl());
  await setup.query('create table writes (id int primary key, phase text)');
  await setup.query(`insert into writes values (1, 'before')`);
  await setup.end();
  await eventually(async () => (await tryQuery(cluster.standby.connectionString(), 'select 1 from writes'))?.length === 1, 'the row to reach n2');

  await crashServer(cluster.primary);
  await eventually(() => first.instance.status().primary === 'n2', 'failover to n2', 60_000);
  t.equal(first.instance.status().epoch, 2, 'the first instance failed over at epoch 2');
  await first.stop();

  const persisted = JSON.parse(readFileSync(join(stateDir, 'cluster-state.json'), 'utf8')) as { epoch: number; primary: string; fenced: string[] };
  t.same({ epoch: persisted.epoch, primary: persisted.primary, fenced: persisted.fenced }, { epoch: 2, primary: 'n2', fenced: ['n1'] }, 'the state on disk records the failover');

  // The old primary comes back, on its old timeline, while no pgfloat runs.
  await cluster.primary.start();
  t.same(await tryQuery(cluster.primary.connectionString(), 'select pg_is_in_recovery() as r'), [{ r: false }], 'n1 runs as a primary');

  const second = await startPgfloatAt(t, cluster.nodes, stateDir);
  let status = second.instance.status();
  t.equal(status.epoch, 2, 'the new instance starts at epoch 2');
  t.equal(status.primary, 'n2', 'the new instance routes writes to n2 from its first moment');
  t.ok(nodeStatus(status, 'n1').fenced, 'n1 is fenced from its first moment');
  t.equal(status.splitBrain, false, 'two servers claim primary, but the state decides: no split brain');

  const clients: ObservedClient[] = [];
  t.teardown(() => {
    for (const c of clients) c.end().catch(() => undefined);
  });
  for (let i = 0; i < 3; i++) clients.push(await connectClient(second.readWriteUrl()), await connectClient(second.readOnlyUrl()));
  const ports = await Promise.all(clients.map((c) => serverPortOf(c)));
  t.same(ports, ports.map(() => n2Port), 'every read-write and read-only session of the new instance is on n2');
  await clients[0]!.query(`insert into writes values (2, 'after restart')`);

  await eventually(() => nodeStatus(second.instance.status(), 'n1').roguePrimary, 'n1 to be flagged as a rogue primary', 30_000);
  status = second.instance.status();
  t.ok(nodeStatus(status, 'n1').fenced, 'n1 stays fenced');
  t.equal(status.primary, 'n2', 'n2 is still the primary');
  t.equal(status.epoch, 2, 'still epoch 2');
  t.equal(status.phase, 'steady', 'phase steady');
  t.equal(await metricValue(second.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n1' }), 1, 'the rogue-primary alert metric is raised');
  t.equal(await metricValue(second.adminUrl, 'pgfloat_epoch'), 2, 'the epoch metric says 2');
  let onN1 = -1;
  await eventually(async () => (onN1 = await clientBackendCount(cluster.primary).catch(() => -1)) === 0, 'n1 to have no client sessions', 20_000).catch(() => undefined);
  t.equal(onN1, 0, 'n1 has no client sessions');
  for (const c of clients.splice(0)) await c.end();

  t.same(await tryQuery(cluster.primary.connectionString(), `select id from writes where id = 2`), [], 'the write after the restart did not reach n1');
  t.same(await tryQuery(cluster.standby.connectionString(), `select id from writes where id = 2`), [{ id: 2 }], 'it is on n2');
  let readOnly: string | undefined;
  await eventually(async () => {
    readOnly = (await tryQuery<{ v: string }>(cluster.primary.connectionString(), `select current_setting('default_transaction_read_only') as v`))?.[0]?.v;
    return readOnly === 'on';
  }, 'n1 to be made read-only', 30_000).catch(() => undefined);
  t.equal(readOnly, 'on', 'the new instance fenced n1 with fencing.action sql');

  const after = JSON.parse(readFileSync(join(stateDir, 'cluster-state.json'), 'utf8')) as { epoch: number; primary: string; fenced: string[] };
  t.same({ epoch: after.epoch, primary: after.primary, fenced: after.fenced }, { epoch: 2, primary: 'n2', fenced: ['n1'] }, 'the state on disk is unchanged');
});
