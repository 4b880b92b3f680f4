// The old primary, crashed and failed over from, is started again outside pgfloat: it comes back as a primary on the old timeline, and must stay fenced.
import t from 'tap';
import { connectClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { clientBackendCount, crashServer, metricValue, nodeStatus, serverPortOf, tryQuery, openMixedClients } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';

t.test('SIGKILL of the primary, failover, then the old primary restarted by hand', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const n2Port = cluster.standby.port;

  const setup = await connectClient(proxy.readWriteUrl());
  await setup.query('create table writes (id int primary key, phase text)');
  await setup.query(`insert into writes select g, 'before' from generate_series(1, 10) g`);
  await setup.end();
  await eventually(
    async () => (await tryQuery<{ n: number }>(cluster.standby.connectionString(), 'select count(*)::int as n from writes'))?.[0]?.n === 10,
    'the rows to reach n2',
  );
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n1' }), 0, 'no rogue-primary alert before the fault');

  await crashServer(cluster.primary);
  await eventually(() => proxy.instance.status().primary === 'n2', 'failover to n2', 60_000);
  t.equal(proxy.instance.status().epoch, 2, 'epoch 2 after the failover');

  await cluster.primary.start();
  // pgfloat's sql fencing of the rogue terminates every client backend on n1, this query's too when
  // it lands first: ask again until one is answered.
  let direct: Array<{ r: boolean; tli: number }> | undefined;
  await eventually(async () => {
    direct = await tryQuery<{ r: boolean; tli: number }>(
      cluster.primary.connectionString(),
      'select pg_is_in_recovery() as r, (select timeline_id from pg_control_checkpoint()) as tli',
    );
    return direct !== undefined;
  }, 'n1 to answer a direct query');
  t.same(direct, [{ r: false, tli: 1 }], 'n1 is back as a primary on timeline 1');

  await eventually(() => nodeStatus(proxy.instance.status(), 'n1').roguePrimary, 'n1 to be reported as a rogue primary', 60_000);
  const status = proxy.instance.status();
  const n1 = nodeStatus(status, 'n1');
  t.ok(n1.fenced, 'n1 is fenced');
  t.ok(n1.roguePrimary, 'n1 is flagged as a rogue primary');
  t.equal(n1.health, 'up', 'n1 answers heartbeats');
  t.equal(n1.role, 'primary', 'n1 is seen as a primary');
  t.equal(status.primary, 'n2', 'the routed primary is n2');
  t.equal(status.epoch, 2, 'still epoch 2');
  t.equal(status.splitBrain, false, 'a fenced node claiming primary is not a split brain: the state decides');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n1' }), 1, 'the rogue-primary alert metric is raised');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_fenced', { node: 'n1' }), 1, 'the fenced metric is raised');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_verified_primary', { node: 'n2' }), 1, 'n2 is the verified primary');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_verified_primary', { node: 'n1' }), 0, 'n1 is not');

  // Clients of both kinds, and writes: everything goes to n2.
  const clients = await openMixedClients(t, proxy, 3);
  const ports = await Promise.all(clients.map((c) => serverPortOf(c)));
  t.same(ports, ports.map(() => n2Port), 'every new read-write and read-only session is on n2');
  let id = 100;
  for (const c of clients.filter((_, i) => i % 2 === 0)) {
    for (let k = 0; k < 5; k++) await c.query(`insert into writes values ($1, 'after')`, [id++]);
  }
  let onN1 = -1;
  await eventually(async () => (onN1 = await clientBackendCount(cluster.primary).catch(() => -1)) === 0, 'n1 to have no client sessions', 20_000).catch(() => undefined);
  t.equal(onN1, 0, 'n1 has no client sessions while the new clients are connected');
  for (const c of clients.splice(0)) await c.end();

  const onN2 = await tryQuery<{ n: number }>(cluster.standby.connectionString(), `select count(*)::int as n from writes where phase = 'after'`);
  t.equal(onN2?.[0]?.n, 15, 'the writes after the failover are on n2');
  const onN1Rows = await tryQuery<{ n: number }>(cluster.primary.connectionString(), `select count(*)::int as n from writes where phase = 'after'`);
  t.equal(onN1Rows?.[0]?.n, 0, 'and none reached n1');

  let readOnly: string | undefined;
  await eventually(async () => {
    const rows = await tryQuery<{ v: string }>(cluster.primary.connectionString(), `select current_setting('default_transaction_read_only') as v`);
    readOnly = rows?.[0]?.v;
    return readOnly === 'on';
  }, 'n1 to be made read-only by fencing', 30_000).catch(() => undefined);
  t.equal(readOnly, 'on', 'fencing (action sql) made n1 read-only for direct clients');
  t.equal(proxy.instance.status().primary, 'n2', 'n2 is still the routed primary at the end');
});
