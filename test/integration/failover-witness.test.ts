// The witness rule: pgfloat losing the primary is not enough while the standby still streams from it.
// "pgfloat cannot reach the primary" is played by a TCP forwarder between pgfloat and n1 that the test cuts; n2 streams from n1 directly.
import t from 'tap';
import { connectClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { connectOrError, metricValue, nodeStatus, outcomeWithin, serverPortOf, startForwarder, startPgfloatAt, stateDirFor, tryQuery } from '../harness/faults';
import { eventually } from '../harness/pgfloat';
import { holdsFor } from '../harness/waiting';

t.test('pgfloat cut off from a live primary the standby still streams from', async (t) => {
  const cluster = await startCluster(t);
  const forwarder = await startForwarder(t, cluster.primary.port);
  const nodes = [
    { name: 'n1', host: '127.0.0.1', port: forwarder.port },
    { name: 'n2', host: cluster.standby.host, port: cluster.standby.port },
  ];
  const n1Port = cluster.primary.port;
  const n2Port = cluster.standby.port;
  const streaming = async (): Promise<boolean> =>
    (await tryQuery<{ s: string }>(cluster.standby.connectionString(), 'select status as s from pg_stat_wal_receiver'))?.[0]?.s === 'streaming';

  await t.test('requireStandbyConfirmation (default): no promotion', async (t) => {
    const proxy = await startPgfloatAt(t, nodes, stateDirFor(t));
    const setup = await connectClient(proxy.readWriteUrl());
    t.equal(await serverPortOf(setup), n1Port, 'writes reach n1 through the forwarder');
    await setup.query('create table writes (id int primary key)');
    await setup.end();
    t.ok(await streaming(), 'n2 streams from n1');

    await forwarder.cut();
    await eventually(() => nodeStatus(proxy.instance.status(), 'n1').health === 'down', 'n1 to be down for pgfloat', 30_000);
    await eventually(() => /requireStandbyConfirmation/.test(proxy.instance.status().failoverBlocked ?? ''), 'the witness rule to block the failover', 30_000).catch(
      () => undefined,
    );
    const status = proxy.instance.status();
    t.match(status.failoverBlocked ?? '', /requireStandbyConfirmation/, `the failover is blocked by the witness rule (${status.failoverBlocked})`);
    t.equal(status.epoch, 1, 'epoch 1');
    t.not(status.primary, 'n2', 'n2 is not routed as a primary');
    t.not(status.phase, 'failover: promoting', 'no promotion under way');
    // For standbyConfirmationMs after the primary went down writers are held (a dead primary's
    // standby may still be hearing it); past that the witness is believed.
    await eventually(() => !proxy.instance.status().writesHeld, 'held writers to be let go', 30_000).catch(() => undefined);
    t.equal(proxy.instance.status().writesHeld, false, 'no failover is coming, so new writers are not held (they are refused at once)');

    // Writes are refused meanwhile (after the hold), and n2 is left alone all that time.
    const attempt = await outcomeWithin(connectOrError({ connectionString: proxy.readWriteUrl(), connectionTimeoutMillis: 60_000 }), 60_000);
    const err = attempt.kind === 'answered' ? attempt.value.error : undefined;
    if (attempt.kind === 'answered') attempt.value.client?.end().catch(() => undefined);
    t.equal(err?.code, '57P03', `read-write clients are refused with 57P03 (${err?.message})`);
    t.match(err?.detail ?? '', /requireStandbyConfirmation/, 'the refusal detail gives the reason');
    // Longer than failover.standbyConfirmationMs (3 s): the witness keeps confirming the primary.
    const blocked = await holdsFor(3500, 'past failover.standbyConfirmationMs (3 s) pgfloat would believe n1 dead and promote n2 if the witness did not confirm n1', () => {
      const s = proxy.instance.status();
      return s.epoch === 1 && s.primary !== 'n2' && !s.phase.startsWith('failover:');
    });
    t.ok(blocked.held, `no failover began: ${blocked.summary}`);
    const later = proxy.instance.status();
    t.equal(later.epoch, 1, 'still epoch 1 well past standbyConfirmationMs');
    t.match(later.failoverBlocked ?? '', /requireStandbyConfirmation/, 'still blocked by the witness rule');
    t.same(await tryQuery(cluster.standby.connectionString(), 'select pg_is_in_recovery() as r'), [{ r: true }], 'n2 is still in recovery');
    t.ok(await streaming(), 'n2 still streams from n1');
    t.notOk(nodeStatus(later, 'n1').fenced, 'n1 was not fenced either');

    // The path comes back: so do writes, to n1.
    await forwarder.restore();
    await eventually(() => proxy.instance.status().primary === 'n1', 'n1 to be routed again', 30_000);
    const back = await connectClient(proxy.readWriteUrl());
    t.equal(await serverPortOf(back), n1Port, 'writes reach n1 again');
    await back.query('insert into writes values (1)');
    await back.end();
    t.equal(proxy.instance.status().failoverBlocked, null, 'nothing blocked any more');
    await proxy.stop();
  });

  await t.test('requireStandbyConfirmation: false: the same cut promotes n2', async (t) => {
    t.ok(await streaming(), 'n2 streams from n1');
    const proxy = await startPgfloatAt(t, nodes, stateDirFor(t), { failover: { requireStandbyConfirmation: false } });
    t.equal(proxy.instance.status().primary, 'n1', 'n1 is the primary at first');
    // The lag gauge exists once pgfloat holds a WAL position of the recorded primary: the bound on data loss.
    await eventually(
      async () => (await metricValue(proxy.adminUrl, 'pgfloat_receive_lag_bytes', { node: 'n2' })) !== undefined,
      "pgfloat to know the primary's WAL position",
      30_000,
    );
    await forwarder.cut();
    await eventually(() => proxy.instance.status().primary === 'n2', 'n2 to be promoted', 60_000);
    const status = proxy.instance.status();
    t.equal(status.epoch, 2, 'epoch 2');
    t.ok(nodeStatus(status, 'n1').fenced, 'n1 is fenced at the proxy');
    t.same(await tryQuery(cluster.standby.connectionString(), 'select pg_is_in_recovery() as r'), [{ r: false }], 'n2 was promoted');
    const client = await connectClient(proxy.readWriteUrl());
    t.equal(await serverPortOf(client), n2Port, 'writes reach n2');
    await client.query('insert into writes values (2)');
    await client.end();
  });
});
