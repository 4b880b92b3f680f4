// With the primary gone, read-write clients are refused (57P03) while read-only keeps working;
// writes resume when the primary is back.

import t from 'tap';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { connectClient, queryOnce, rejectionOf } from '../harness/clients';

t.test('no primary (failover disabled: the proxy alone, as a VIP would behave)', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { failover: { enabled: false } });
  const refusalsOf = async (listener: string): Promise<number> => {
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    const match = new RegExp(`^pgfloat_client_refusals_total\\{listener="${listener}",reason="no-primary"\\} (\\d+)$`, 'm').exec(metrics);
    if (!match) throw new Error(`no no-primary refusal series for ${listener} in /metrics`);
    return Number(match[1]);
  };

  await queryOnce(proxy.readWriteUrl(), 'create table writes (id int)');
  t.equal(await refusalsOf('readWrite'), 0, 'no refusals while the primary is up');
  const existing = await connectClient(proxy.readWriteUrl());
  t.teardown(() => existing.end().catch(() => undefined));

  await cluster.primary.stop('immediate');
  await eventually(() => proxy.instance.status().primary === null, 'status to show no primary');
  const status = proxy.instance.status();
  t.match(status.readWrite, /^refusing: no verified primary available/, 'status says why read-write is refused');
  t.same(status.standbys, ['n2'], 'the standby is still routable');

  t.test('a session open on the primary sees its server go away', async (t) => {
    const err = await rejectionOf(existing.query('select 1'));
    t.ok(err instanceof Error, `the query fails: ${err.message}`);
  });

  t.test('read-write clients are refused', async (t) => {
    const err = await rejectionOf(connectClient(proxy.readWriteUrl()));
    t.equal(err.code, '57P03', 'cannot_connect_now');
    t.match(err.message, /no verified primary available/);
    t.equal((err as Error & { severity?: string }).severity, 'FATAL');
    t.ok((await refusalsOf('readWrite')) >= 1, 'counted in pgfloat_client_refusals_total{reason="no-primary"}');
  });

  t.test('the read-only port still works', async (t) => {
    const rows = await queryOnce<{ r: boolean; n: string }>(proxy.readOnlyUrl(), 'select pg_is_in_recovery() as r, count(*) as n from writes');
    t.same(rows, [{ r: true, n: '0' }]);
  });

  t.test('writes work again once the primary is back', async (t) => {
    await cluster.primary.start();
    await eventually(() => proxy.instance.status().primary === 'n1', 'n1 to be the verified primary again');
    await queryOnce(proxy.readWriteUrl(), 'insert into writes values (1), (2)');
    const rows = await queryOnce<{ n: string }>(cluster.primary.connectionString(), 'select count(*) as n from writes');
    t.same(rows, [{ n: '2' }], 'the insert reached the primary');
    t.match(proxy.instance.status().readWrite, /^routing$/);
  });
});
