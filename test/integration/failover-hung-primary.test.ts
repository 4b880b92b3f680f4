// The primary hangs (every process SIGSTOPped): pgfloat fails over, and the old primary, once it runs again, is a fenced rogue that gets no clients.
import t from 'tap';
import { connectClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import {
  clientBackendCount,
  freezeServer,
  metricValue,
  nodeStatus,
  outcomeWithin,
  processState,
  serverPortOf,
  tryQuery, openMixedClients } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';

t.test('SIGSTOP of every process of the primary, then SIGCONT', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const n1Port = cluster.primary.port;
  const n2Port = cluster.standby.port;

  // Two sessions on the primary through pgfloat: one will be idle during the hang, one will be mid-query.
  const idle = await connectClient(proxy.readWriteUrl());
  const busy = await connectClient(proxy.readWriteUrl());
  t.teardown(() => {
    idle.end().catch(() => undefined);
    busy.end().catch(() => undefined);
  });
  t.equal(await serverPortOf(idle), n1Port, 'the idle session is on n1');
  t.equal(await serverPortOf(busy), n1Port, 'the busy session is on n1');
  await idle.query('create table marks (id int primary key, note text)');
  await idle.query(`insert into marks values (1, 'before the hang')`);
  await eventually(async () => (await tryQuery(cluster.standby.connectionString(), 'select 1 from marks where id = 1'))?.length === 1, 'the row to reach n2');

  const frozen = freezeServer(t, cluster.primary);
  t.ok(frozen.pids.length >= 5, `the postmaster and its children are frozen (${frozen.pids.length} processes)`);
  await eventually(() => frozen.pids.every((pid) => processState(pid) === 'T'), 'every frozen process to be stopped', 10_000).catch(() => undefined);
  t.ok(frozen.pids.every((pid) => processState(pid) === 'T'), 'every frozen process is stopped');

  // A query sent into the hung server: without pgfloat it would wait forever.
  const inFlight = outcomeWithin(busy.query('select 1 as one'), 60_000);

  await eventually(() => proxy.instance.status().primary === 'n2', 'failover to n2 (the witness must first stop hearing from n1)', 90_000);
  let status = proxy.instance.status();
  t.equal(status.epoch, 2, 'epoch 2 after the failover');
  t.equal(status.phase, 'steady', 'the failover finished');
  t.ok(nodeStatus(status, 'n1').fenced, 'n1 is fenced');
  t.equal(status.lastFailover?.oldPrimary, 'n1', 'the failover record names n1 as the old primary');

  const inFlightOutcome = await inFlight;
  t.equal(inFlightOutcome.kind, 'error', `the query in flight on the hung primary failed instead of hanging (${inFlightOutcome.kind})`);
  const idleOutcome = await outcomeWithin(idle.query('select 1 as one'), 10_000);
  t.equal(idleOutcome.kind, 'error', `the idle session on the old primary was dropped: its next query fails (${idleOutcome.kind})`);

  const writer = await connectClient(proxy.readWriteUrl());
  t.equal(await serverPortOf(writer), n2Port, 'a new read-write session lands on n2');
  await writer.query(`insert into marks values (2, 'after the failover')`);
  await writer.end();

  frozen.thaw();
  t.ok(frozen.pids.every((pid) => processState(pid) !== 'T'), 'no process is left stopped');

  // n1 wakes up believing it is the primary.
  await eventually(async () => {
    const rows = await tryQuery<{ r: boolean }>(cluster.primary.connectionString(), 'select pg_is_in_recovery() as r');
    return rows?.[0]?.r === false;
  }, 'n1 to answer again, out of recovery', 60_000);
  await eventually(() => nodeStatus(proxy.instance.status(), 'n1').roguePrimary, 'n1 to be reported as a rogue primary', 60_000);
  status = proxy.instance.status();
  const n1 = nodeStatus(status, 'n1');
  t.ok(n1.fenced, 'n1 is still fenced');
  t.ok(n1.roguePrimary, 'n1 is a rogue primary');
  t.equal(n1.role, 'primary', 'n1 is seen running as a primary');
  t.equal(status.primary, 'n2', 'writes still go to n2');
  t.equal(status.epoch, 2, 'the epoch did not move');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n1' }), 1, 'the rogue-primary alert metric is raised for n1');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n2' }), 0, 'and not for n2');

  // New clients of both kinds: none may reach n1.
  const clients = await openMixedClients(t, proxy, 3);
  const ports = await Promise.all(clients.map((c) => serverPortOf(c)));
  t.same(ports, ports.map(() => n2Port), 'every new read-write and read-only session is on n2');
  const writes = await Promise.all(clients.filter((_, i) => i % 2 === 0).map((c, i) => c.query('insert into marks values ($1, $2)', [10 + i, 'new client'])));
  t.equal(writes.length, 3, 'the read-write sessions write');
  // Sessions the hang left behind on n1 may take a moment to notice their clients are gone.
  let onN1 = -1;
  await eventually(async () => (onN1 = await clientBackendCount(cluster.primary).catch(() => -1)) === 0, 'n1 to have no client sessions', 30_000).catch(() => undefined);
  t.equal(onN1, 0, 'n1 has no client sessions while the new clients are connected');
  for (const c of clients.splice(0)) await c.end();

  // fencing.action sql: whatever connects to n1 directly cannot write either.
  let readOnly: string | undefined;
  await eventually(async () => {
    const rows = await tryQuery<{ default_transaction_read_only: string }>(cluster.primary.connectionString(), 'show default_transaction_read_only');
    readOnly = rows?.[0]?.default_transaction_read_only;
    return readOnly === 'on';
  }, 'n1 to be made read-only by the fencing action', 30_000).catch(() => undefined);
  t.equal(readOnly, 'on', 'n1 has default_transaction_read_only = on');

  const rows = await tryQuery<{ id: number }>(cluster.primary.connectionString(), 'select id from marks order by id');
  t.same(
    rows?.map((r) => r.id),
    [1],
    'n1 holds only what was written before the hang',
  );
});
