// Real clusters: roles, streaming replication, reuse of an existing base directory, password authentication.

import t from 'tap';
import { Client } from 'pg';
import { LocalCluster } from '../../src/sandbox/local-cluster';
import { startCluster } from '../harness/cluster';

async function query<R extends object>(connectionString: string, sql: string): Promise<R[]> {
  const client = new Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

const inRecovery = async (url: string): Promise<boolean> =>
  (await query<{ r: boolean }>(url, 'select pg_is_in_recovery() as r'))[0]!.r;

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('primary, streaming standby, and reuse of the base directory', async (t) => {
  const cluster = await startCluster(t);
  const { primary, standby } = cluster;
  t.same([primary.name, standby.name], ['n1', 'n2']);
  t.ok(await primary.isRunning());
  t.ok(primary.postmasterPid());
  t.equal(await inRecovery(primary.connectionString()), false, 'n1 is the primary');
  t.equal(await inRecovery(standby.connectionString()), true, 'n2 is a standby');

  await query(primary.connectionString(), 'create table t (v text); insert into t values ($$replicated$$)');
  await eventually('the table on n2', async () => (await query(standby.connectionString(), 'select v from t')).length === 1);

  await cluster.stop();
  t.notOk(await primary.isRunning());
  t.notOk(await standby.isRunning());
  await cluster.stop(); // already stopped: no error

  const again = await LocalCluster.open({ baseDir: cluster.baseDir, ports: [primary.port, standby.port] });
  t.equal(await inRecovery(again.primary.connectionString()), false);
  t.equal(await inRecovery(again.standby.connectionString()), true);
  for (const node of again.nodes) {
    t.same(await query(node.connectionString(), 'select v from t'), [{ v: 'replicated' }], `data kept on ${node.name}`);
  }
});

t.test('password with scram-sha-256', async (t) => {
  const password = "it's s3cret";
  const cluster = await startCluster(t, { password, authMethod: 'scram-sha-256' });
  const { primary, standby } = cluster;
  const wrong = `postgres://postgres:nope@127.0.0.1:${primary.port}/postgres`;
  await t.rejects(query(wrong, 'select 1'), /password authentication failed/);
  await t.rejects(query(`postgres://postgres@127.0.0.1:${primary.port}/postgres`, 'select 1'));
  t.match(primary.connectionString(), /^postgres:\/\/postgres:it's%20s3cret@127\.0\.0\.1:\d+\/postgres$/);
  t.same(await query(primary.connectionString(), 'select 1 as one'), [{ one: 1 }]);
  t.equal(await inRecovery(standby.connectionString()), true, 'the standby authenticated to the primary too');
  const [hash] = await query<{ h: string }>(primary.connectionString(), "select rolpassword as h from pg_authid where rolname = 'postgres'");
  t.match(hash!.h, /^SCRAM-SHA-256\$/);
});

t.test('password with md5 stores an md5 hash', async (t) => {
  const cluster = await startCluster(t, { password: 'pw', authMethod: 'md5' });
  const [hash] = await query<{ h: string }>(cluster.primary.connectionString(), "select rolpassword as h from pg_authid where rolname = 'postgres'");
  t.match(hash!.h, /^md5/);
  await t.rejects(query(`postgres://postgres:bad@127.0.0.1:${cluster.primary.port}/postgres`, 'select 1'), /password authentication failed/);
});
