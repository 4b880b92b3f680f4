// The standby goes down: no failover, writes keep going to the primary, reads fall back to it; the standby is used again once back.
import t from 'tap';
import { connectClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { nodeStatus, serverPortOf } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { holdsFor } from '../harness/waiting';
import type { PgfloatStatus } from '../../src/admin/status';

t.test('standby stopped (immediate), then started again', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const n1Port = cluster.primary.port;
  const n2Port = cluster.standby.port;

  const setup = await connectClient(proxy.readWriteUrl());
  await setup.query('create table writes (id serial primary key)');
  await setup.end();
  const reader = await connectClient(proxy.readOnlyUrl());
  t.equal(await serverPortOf(reader), n2Port, 'read-only clients use the standby at first');

  // Every status while the standby is away: none may show a failover.
  const seen: PgfloatStatus[] = [];
  const sampler = setInterval(() => seen.push(proxy.instance.status()), 100);
  t.teardown(() => clearInterval(sampler));

  await cluster.standby.stop('immediate');
  await eventually(() => nodeStatus(proxy.instance.status(), 'n2').health === 'down', 'n2 to be reported down', 30_000);
  const readerOutcome = await reader.query('select 1').then(
    () => 'answered',
    () => 'failed',
  );
  t.equal(readerOutcome, 'failed', 'the read-only session on the stopped standby ended');

  const writer = await connectClient(proxy.readWriteUrl());
  t.equal(await serverPortOf(writer), n1Port, 'read-write clients still reach n1');
  for (let i = 0; i < 10; i++) await writer.query('insert into writes default values');
  const fallback = await connectClient(proxy.readOnlyUrl());
  t.equal(await serverPortOf(fallback), n1Port, 'read-only clients fall back to the primary');
  await fallback.end();
  // A few more heartbeats with the standby gone, writing all along.
  let written = 10;
  const steady = await holdsFor(1500, 'seven heartbeats (monitor.intervalMs 200) with n2 down: a failover taking it for the primary, or any other, would have begun', async () => {
    await writer.query('insert into writes default values');
    written++;
    const s = proxy.instance.status();
    return s.epoch === 1 && s.primary === 'n1' && s.phase === 'steady';
  });
  t.ok(steady.held, `writes went on to n1 with no failover: ${steady.summary}`);

  let status = proxy.instance.status();
  t.equal(status.epoch, 1, 'epoch 1: no failover');
  t.equal(status.primary, 'n1', 'n1 is the primary');
  t.equal(status.phase, 'steady', 'phase steady');
  t.equal(nodeStatus(status, 'n2').health, 'down', 'status shows n2 down');
  t.notOk(nodeStatus(status, 'n2').fenced, 'n2 is not fenced for being down');
  t.same(status.standbys, [], 'no standby is routed');
  t.equal(status.failoverBlocked, null, 'nothing to block: the primary is fine');

  await cluster.standby.start();
  await eventually(() => proxy.instance.status().standbys.includes('n2'), 'n2 to be routed as a standby again', 60_000);
  const back = await connectClient(proxy.readOnlyUrl());
  t.equal(await serverPortOf(back), n2Port, 'read-only clients use n2 again, without operator action');
  await eventually(async () => (await back.query<{ n: number }>('select count(*)::int as n from writes')).rows[0]!.n === written, 'n2 to catch up', 30_000);
  t.pass('n2 caught up with the writes made while it was down');
  await back.end();
  await writer.query('insert into writes default values');
  t.equal(await serverPortOf(writer), n1Port, 'the writer stayed on n1 throughout');
  await writer.end();
  clearInterval(sampler);

  status = proxy.instance.status();
  t.equal(status.epoch, 1, 'epoch still 1');
  t.equal(nodeStatus(status, 'n2').health, 'up', 'n2 is up');
  t.equal(nodeStatus(status, 'n2').role, 'standby', 'n2 is a standby');
  t.ok(seen.length >= 10, `status was sampled throughout (${seen.length} samples)`);
  const bad = seen.filter((s) => s.epoch !== 1 || s.primary === 'n2' || s.phase !== 'steady');
  t.same(
    bad.map((s) => ({ epoch: s.epoch, primary: s.primary, phase: s.phase })),
    [],
    'at no point was there a failover, another primary, or a non-steady phase',
  );
});
