// Promotion cannot finish (the standby's startup process is frozen): the failover fails loudly, writes stay refused, and a retry succeeds once it can.
import t from 'tap';
import { connectClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { connectOrError, crashServer, freezePid, metricValue, nodeStatus, outcomeWithin, processState, serverPortOf, tryQuery } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';

t.test('promotion blocked by a frozen startup process, then unblocked', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { failover: { promoteTimeoutMs: 2000, retryIntervalMs: 1000 } });
  const n2Port = cluster.standby.port;

  const setup = await connectClient(proxy.readWriteUrl());
  await setup.query('create table writes (id int primary key)');
  await setup.query('insert into writes values (1)');
  await setup.end();
  await eventually(async () => (await tryQuery(cluster.standby.connectionString(), 'select 1 from writes'))?.length === 1, 'the row to reach n2');

  const startup = await tryQuery<{ pid: number }>(cluster.standby.connectionString(), `select pid from pg_stat_activity where backend_type = 'startup'`);
  const startupPid = startup?.[0]?.pid;
  if (startupPid === undefined) throw new Error('no startup process found on n2');
  const frozen = freezePid(t, startupPid);
  await eventually(() => processState(startupPid) === 'T', 'the startup process to stop', 10_000).catch(() => undefined);
  t.equal(processState(startupPid), 'T', "n2's startup process is stopped");

  await crashServer(cluster.primary);
  await eventually(() => proxy.instance.status().phase === 'failed', 'the failover to fail', 60_000).catch(() => undefined);
  const status = proxy.instance.status();
  t.equal(status.phase, 'failed', 'phase failed once the promotion timed out');
  t.equal(status.epoch, 1, 'epoch 1: nothing was promoted');
  t.equal(status.primary, null, 'no primary is routed');
  t.ok(nodeStatus(status, 'n1').fenced, 'the old primary is fenced all the same');
  t.ok(((await metricValue(proxy.adminUrl, 'pgfloat_failovers_total', { result: 'failure' })) ?? 0) > 0, 'pgfloat_failovers_total{result="failure"} counts it');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_failovers_total', { result: 'success' }), 0, 'and no success');

  // Writes are refused (a client arriving during a retry is held, then refused when the retry fails).
  const attempt = await outcomeWithin(connectOrError({ connectionString: proxy.readWriteUrl(), connectionTimeoutMillis: 60_000 }), 60_000);
  t.equal(attempt.kind, 'answered', 'the read-write client got an answer');
  const err = attempt.kind === 'answered' ? attempt.value.error : undefined;
  if (attempt.kind === 'answered') attempt.value.client?.end().catch(() => undefined);
  t.equal(err?.code, '57P03', `read-write clients are refused with 57P03 (${err?.message})`);
  t.match(err?.message ?? '', /failover/, 'the refusal says a failover failed or is in progress');
  t.same(
    await tryQuery(cluster.standby.connectionString(), 'select pg_is_in_recovery() as r'),
    [{ r: true }],
    'n2 is still in recovery while its startup process is frozen',
  );

  frozen.thaw();
  await eventually(() => proxy.instance.status().primary === 'n2', 'n2 to be promoted and routed once it can be', 60_000);
  const after = proxy.instance.status();
  t.equal(after.epoch, 2, 'epoch 2');
  t.equal(after.phase, 'steady', 'phase steady');
  t.equal(after.lastFailover?.newPrimary, 'n2', 'the failover is recorded');
  t.equal(nodeStatus(after, 'n2').timeline, 2, 'n2 runs on timeline 2');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_failovers_total', { result: 'success' }), 1, 'pgfloat_failovers_total{result="success"} is 1');

  const client = await connectClient(proxy.readWriteUrl());
  t.equal(await serverPortOf(client), n2Port, 'read-write clients reach n2');
  await client.query('insert into writes values (2)');
  const { rows } = await client.query<{ id: number }>('select id from writes order by id');
  t.same(rows, [{ id: 1 }, { id: 2 }], 'writes work on n2');
  await client.end();
});
