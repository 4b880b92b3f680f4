// The primary is out of connection slots for ordinary roles: a busy server is not a dead one, so no failover.
import t from 'tap';
import { Client } from 'pg';
import { connectClient, queryOnce } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { nodeStatus, serverPortOf } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { holdsFor } from '../harness/waiting';
import type { PgfloatStatus } from '../../src/admin/status';

t.test('max_connections exhausted on the primary by a non-superuser', async (t) => {
  const cluster = await startCluster(t, { extraConf: { max_connections: 20, superuser_reserved_connections: 3 } });
  const proxy = await startPgfloat(t, cluster);
  const n1Port = cluster.primary.port;

  await queryOnce(proxy.readWriteUrl(), 'create role app login');
  await queryOnce(proxy.readWriteUrl(), 'create table writes (id serial primary key)');
  await queryOnce(proxy.readWriteUrl(), 'grant insert, select on writes to app; grant usage on sequence writes_id_seq to app');

  /** One direct connection attempt as the role: 'connected' (and closed again) or the SQLSTATE it was refused with. */
  const tryConnectApp = async (): Promise<string | undefined> => {
    const c = new Client({ host: cluster.primary.host, port: n1Port, user: 'app', database: 'postgres' });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.end();
      return 'connected';
    } catch (err) {
      return (err as Error & { code?: string }).code;
    }
  };

  const hogs: Client[] = [];
  t.teardown(() => {
    for (const c of hogs) c.end().catch(() => undefined);
  });
  let refusal: (Error & { code?: string }) | undefined;
  for (let i = 0; i < 40 && refusal === undefined; i++) {
    const c = new Client({ host: cluster.primary.host, port: n1Port, user: 'app', database: 'postgres' });
    c.on('error', () => undefined);
    try {
      await c.connect();
      hogs.push(c);
    } catch (err) {
      refusal = err as Error & { code?: string };
    }
  }
  t.equal(refusal?.code, '53300', `the server refuses the role once full (${refusal?.message}; ${hogs.length} sessions open)`);
  t.ok(hogs.length > 5, 'the role took the non-reserved slots');

  // The monitor's connection drops while the server is full: it must reconnect (a reserved superuser slot).
  const monitorPid = async (): Promise<number | undefined> =>
    (await queryOnce<{ pid: number }>(cluster.primary.connectionString(), `select pid from pg_stat_activity where application_name = 'pgfloat-monitor'`))[0]?.pid;
  const before = await monitorPid();
  t.ok(before, 'pgfloat monitors n1 over one connection');
  await queryOnce(cluster.primary.connectionString(), 'select pg_terminate_backend($1)', [before]);

  // Several heartbeat intervals at the limit; every status in that time must show the cluster as it was.
  const seen: PgfloatStatus[] = [];
  const calm = await holdsFor(
    3000,
    'a node pgfloat wrongly took for dead is down after 2 failed heartbeats of at most 1 s (monitor.timeoutMs, failuresBeforeDown), its failover starting at once',
    () => {
      const s = proxy.instance.status();
      seen.push(s);
      // n1 may be suspect for a moment (its monitor connection was just cut), and new writers
      // refused meanwhile; what must not happen is n1 declared down or a failover starting.
      return s.epoch === 1 && s.phase === 'steady' && s.primary !== 'n2' && nodeStatus(s, 'n1').health !== 'down';
    },
  );
  t.ok(calm.held, `no failover while the server is full: ${calm.summary}`);
  t.equal(await tryConnectApp(), '53300', 'the server was still full at the end of the wait');
  const status = proxy.instance.status();
  t.equal(status.epoch, 1, 'epoch 1');
  t.equal(status.primary, 'n1', 'n1 is the primary');
  t.equal(status.phase, 'steady', 'phase steady');
  t.equal(nodeStatus(status, 'n1').health, 'up', 'n1 answers heartbeats (through a reserved slot)');
  t.notOk(nodeStatus(status, 'n1').fenced, 'n1 is not fenced');
  const after = await monitorPid();
  t.ok(after !== undefined && after !== before, 'the monitor reconnected to the full server');
  t.ok(seen.length >= 10, `status sampled during the wait (${seen.length} samples)`);
  t.same(
    seen.filter((s) => s.epoch !== 1 || s.phase !== 'steady' || s.primary === 'n2').map((s) => ({ epoch: s.epoch, phase: s.phase, primary: s.primary })),
    [],
    'no failover started at any point',
  );
  t.ok(
    seen.every((s) => nodeStatus(s, 'n1').health !== 'down'),
    'n1 was never declared down',
  );

  for (const c of hogs.splice(0)) await c.end();
  await eventually(async () => (await tryConnectApp()) === 'connected', 'slots to be free again');
  const writer = await connectClient({ connectionString: proxy.readWriteUrl().replace('postgres@', 'app@') });
  t.equal(await serverPortOf(writer), n1Port, 'the role reaches n1 through pgfloat');
  await writer.query('insert into writes default values');
  const { rows } = await writer.query<{ n: number }>('select count(*)::int as n from writes');
  t.equal(rows[0]!.n, 1, 'writes through pgfloat work');
  await writer.end();
});
