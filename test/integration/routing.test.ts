// Read-only routing: to the standby, falling back to the primary (or refusing) while the standby is
// down, back to the standby when it returns; and routing rules by user and application_name.

import t from 'tap';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat, type RunningPgfloat } from '../harness/pgfloat';
import { connectClient, queryOnce, rejectionOf } from '../harness/clients';

type Where = {
  r: boolean;
  port: number;
  who: string;
};

const WHERE = `select pg_is_in_recovery() as r, current_setting('port')::int as port, current_user as who`;

function standbyState(proxy: RunningPgfloat): { standbys: string[]; n2: string | undefined } {
  const status = proxy.instance.status();
  return { standbys: status.standbys, n2: status.nodes.find((n) => n.name === 'n2')?.health };
}

t.test('read-only routing and routing rules', async (t) => {
  const cluster = await startCluster(t);
  const fallback = await startPgfloat(t, cluster);
  const strict = await startPgfloat(t, cluster, { readOnly: { fallbackToPrimary: false } });
  const ruled = await startPgfloat(t, cluster, {
    routing: {
      rules: [
        { user: 'reporting', route: 'readOnly' },
        { applicationName: 'report-*', route: 'readOnly' },
      ],
    },
  });
  const primaryPort = cluster.primary.port;
  const standbyPort = cluster.standby.port;

  await queryOnce(cluster.primary.connectionString(), 'create role reporting login superuser');
  await eventually(
    async () => (await queryOnce(cluster.standby.connectionString(), `select 1 from pg_roles where rolname = 'reporting'`)).length === 1,
    'the role to replicate to the standby',
  );
  const asUser = (port: number, user: string, applicationName = 'routing-test'): { connectionString: string; application_name: string } => ({
    connectionString: `postgres://${user}@127.0.0.1:${port}/postgres`,
    application_name: applicationName,
  });

  t.test('the read-only port reaches the standby', async (t) => {
    for (const proxy of [fallback, strict, ruled]) {
      t.same(await queryOnce<Where>(proxy.readOnlyUrl(), WHERE), [{ r: true, port: standbyPort, who: 'postgres' }]);
    }
    t.same(await queryOnce<Where>(fallback.readWriteUrl(), WHERE), [{ r: false, port: primaryPort, who: 'postgres' }], 'and read-write the primary');
  });

  t.test('routing rules send matching clients on the read-write port to the standby', async (t) => {
    t.same(await queryOnce<Where>(asUser(ruled.readWritePort, 'reporting'), WHERE), [{ r: true, port: standbyPort, who: 'reporting' }], 'user reporting');
    t.same(
      await queryOnce<Where>(asUser(ruled.readWritePort, 'postgres', 'report-daily'), WHERE),
      [{ r: true, port: standbyPort, who: 'postgres' }],
      'application_name report-*',
    );
    t.same(await queryOnce<Where>(asUser(ruled.readWritePort, 'postgres'), WHERE), [{ r: false, port: primaryPort, who: 'postgres' }], 'others still reach the primary');
    t.same(
      await queryOnce<Where>(asUser(fallback.readWritePort, 'reporting'), WHERE),
      [{ r: false, port: primaryPort, who: 'reporting' }],
      'without rules, reporting on the read-write port reaches the primary',
    );
  });

  t.test('while the standby is down', async (t) => {
    await cluster.standby.stop('fast');
    for (const proxy of [fallback, strict]) {
      await eventually(() => {
        const s = standbyState(proxy);
        return s.standbys.length === 0 && s.n2 === 'down';
      }, 'the monitor to mark n2 down');
    }
    t.same(standbyState(fallback), { standbys: [], n2: 'down' });

    t.same(await queryOnce<Where>(fallback.readOnlyUrl(), WHERE), [{ r: false, port: primaryPort, who: 'postgres' }], 'read-only falls back to the primary');

    const refused = await rejectionOf(connectClient(strict.readOnlyUrl()));
    t.equal(refused.code, '57P03', 'without fallback: cannot_connect_now');
    t.match(refused.message, /no healthy standby/);
    t.match((refused as Error & { detail?: string }).detail ?? '', /fallbackToPrimary is off/);
    t.same(await queryOnce<Where>(strict.readWriteUrl(), WHERE), [{ r: false, port: primaryPort, who: 'postgres' }], 'read-write is unaffected');

    await eventually(() => ruled.instance.status().standbys.length === 0, 'the ruled instance to notice');
    t.same(
      await queryOnce<Where>(asUser(ruled.readWritePort, 'reporting'), WHERE),
      [{ r: false, port: primaryPort, who: 'reporting' }],
      'a client routed read-only by a rule falls back to the primary too',
    );

    const metrics = await (await fetch(`${strict.adminUrl}/metrics`)).text();
    const refusals = /pgfloat_client_refusals_total\{listener="readOnly",reason="no-standby"\} (\d+)/.exec(metrics);
    t.ok(refusals && Number(refusals[1]) >= 1, 'the refusal is counted', { found: refusals?.[0] });
  });

  t.test('when the standby is back, read-only goes back to it', async (t) => {
    await cluster.standby.start();
    for (const proxy of [fallback, strict, ruled]) {
      await eventually(() => proxy.instance.status().standbys.join() === 'n2', 'n2 to be routable again');
    }
    for (const proxy of [fallback, strict]) {
      t.same(await queryOnce<Where>(proxy.readOnlyUrl(), WHERE), [{ r: true, port: standbyPort, who: 'postgres' }]);
    }
    t.same(await queryOnce<Where>(asUser(ruled.readWritePort, 'reporting'), WHERE), [{ r: true, port: standbyPort, who: 'reporting' }], 'rules route to it again');
  });
});
