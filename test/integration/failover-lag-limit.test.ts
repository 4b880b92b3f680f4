// The only standby is further behind the dead primary than failover.maxLagBytes: no automatic promotion; an operator may accept the loss.
import t from 'tap';
import { connectClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { connectOrError, crashServer, nodeStatus, outcomeWithin, serverPortOf, tryQuery } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { lsnToBigInt } from '../../src/cluster/lsn';

t.test('standby lagging over failover.maxLagBytes when the primary dies', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { failover: { maxLagBytes: 65536 } });
  const n2Port = cluster.standby.port;

  const writer = await connectClient(proxy.readWriteUrl());
  await writer.query('create table t (id serial primary key, v text)');
  await writer.query(`insert into t (v) values ('replicated')`);
  await eventually(async () => (await tryQuery(cluster.standby.connectionString(), 'select 1 from t'))?.length === 1, 'the first row to reach n2');

  await cluster.standby.stop('immediate');
  await eventually(() => nodeStatus(proxy.instance.status(), 'n2').health === 'down', 'n2 to be seen down');
  // ~4 MB of WAL the standby never receives.
  await writer.query(`insert into t (v) select repeat('x', 1000) from generate_series(1, 4000)`);
  const { rows } = await writer.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
  const written = lsnToBigInt(rows[0]!.lsn);
  await writer.end();
  await eventually(() => {
    const lsn = nodeStatus(proxy.instance.status(), 'n1').lsn;
    return lsn !== null && lsnToBigInt(lsn) >= written;
  }, 'a heartbeat to see the primary past the insert', 30_000);

  await crashServer(cluster.primary);
  await cluster.standby.start();
  await eventually(() => nodeStatus(proxy.instance.status(), 'n2').health === 'up', 'n2 to answer again', 60_000);
  await eventually(() => /failover\.maxLagBytes/.test(proxy.instance.status().failoverBlocked ?? ''), 'the failover to be blocked by the lag limit', 60_000).catch(
    () => undefined,
  );
  let status = proxy.instance.status();
  t.match(status.failoverBlocked ?? '', /failover\.maxLagBytes/, `the failover is blocked by failover.maxLagBytes (${status.failoverBlocked})`);
  t.equal(status.epoch, 1, 'epoch 1: no promotion');
  t.not(status.primary, 'n2', 'n2 is not routed as a primary');
  t.equal(nodeStatus(status, 'n2').role, 'standby', 'pgfloat sees n2 as a standby');
  t.equal(status.writesHeld, false, 'no failover is under way, so new writers are not held (they are refused at once)');
  const recovery = await tryQuery<{ r: boolean }>(cluster.standby.connectionString(), 'select pg_is_in_recovery() as r');
  t.same(recovery, [{ r: true }], 'n2 is still in recovery');

  const refused = await outcomeWithin(connectOrError({ connectionString: proxy.readWriteUrl(), connectionTimeoutMillis: 60_000 }), 60_000);
  t.equal(refused.kind, 'answered', 'the read-write client got an answer');
  const err = refused.kind === 'answered' ? refused.value.error : undefined;
  refused.kind === 'answered' && refused.value.client?.end().catch(() => undefined);
  t.equal(err?.code, '57P03', `read-write clients are refused with 57P03 (${err?.message})`);
  t.match(err?.detail ?? err?.message ?? '', /maxLagBytes/, 'the refusal says why');
  t.same(
    await tryQuery<{ r: boolean }>(cluster.standby.connectionString(), 'select pg_is_in_recovery() as r'),
    [{ r: true }],
    'n2 still in recovery after the client was refused',
  );
  t.equal(proxy.instance.status().epoch, 1, 'still epoch 1');

  const after = proxy.instance.operator({ command: 'failover', allowDataLoss: true });
  t.equal(after.phase.kind, 'failover', 'the operator failover with allowDataLoss starts');
  await eventually(() => proxy.instance.status().primary === 'n2', 'n2 to be promoted and routed', 60_000);
  status = proxy.instance.status();
  t.equal(status.epoch, 2, 'epoch 2');
  t.equal(status.failoverBlocked, null, 'nothing blocked any more');
  t.ok(nodeStatus(status, 'n1').fenced, 'n1 is fenced');
  t.equal(status.lastFailover?.newPrimary, 'n2', 'the failover is recorded');

  const client = await connectClient(proxy.readWriteUrl());
  t.equal(await serverPortOf(client), n2Port, 'read-write clients reach n2');
  await client.query(`insert into t (v) values ('after')`);
  const counts = await client.query<{ v: string; n: number }>(`select v, count(*)::int as n from t where v in ('replicated', 'after') group by v order by v`);
  t.same(counts.rows, [
    { v: 'after', n: 1 },
    { v: 'replicated', n: 1 },
  ], 'writes work on n2, which has what it received before the lag');
  await client.end();
});
