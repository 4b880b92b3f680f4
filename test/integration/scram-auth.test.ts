// Password authentication passes through pgfloat untouched: SCRAM-SHA-256 and md5 exchanges with the
// server, and the server's own 28P01 for a wrong password.

import t from 'tap';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { connectClient, queryOnce, rejectionOf, runPsql } from '../harness/clients';
import type { AuthMethod, LocalCluster } from '../../src/sandbox/local-cluster';

const PASSWORD = 'sekret';

async function checkAuth(t: tap.Test, authMethod: AuthMethod, storedPrefix: string): Promise<LocalCluster> {
  const cluster = await startCluster(t, { password: PASSWORD, authMethod });
  const proxy = await startPgfloat(t, cluster, {}, { password: PASSWORD });
  const port = proxy.readWritePort;

  const stored = await queryOnce<{ p: string }>(cluster.primary.connectionString(), `select rolpassword as p from pg_authid where rolname = 'postgres'`);
  t.ok(stored[0]!.p.startsWith(storedPrefix), `the password is stored as ${storedPrefix}`);
  const hba = await queryOnce<{ auth: string }>(
    cluster.primary.connectionString(),
    `select auth_method as auth from pg_hba_file_rules where type = 'host' and address = '127.0.0.1' limit 1`,
  );
  t.same(hba, [{ auth: authMethod }], `TCP connections use ${authMethod}`);

  const client = await connectClient({ host: '127.0.0.1', port, user: 'postgres', password: PASSWORD, database: 'postgres' });
  const { rows } = await client.query<{ user: string; r: boolean }>('select current_user as user, pg_is_in_recovery() as r');
  t.same(rows, [{ user: 'postgres', r: false }], 'pg with the right password reaches the primary');
  await client.end();

  const ro = await queryOnce<{ r: boolean }>({ host: '127.0.0.1', port: proxy.readOnlyPort, user: 'postgres', password: PASSWORD, database: 'postgres' }, 'select pg_is_in_recovery() as r');
  t.same(ro, [{ r: true }], 'and the standby on the read-only port');

  const wrong = await rejectionOf(connectClient({ host: '127.0.0.1', port, user: 'postgres', password: 'not-the-password', database: 'postgres' }));
  t.equal(wrong.code, '28P01', 'a wrong password fails with invalid_password');
  t.match(wrong.message, /password authentication failed for user "postgres"/, "the server's own message");

  const unknownUser = await rejectionOf(connectClient({ host: '127.0.0.1', port, user: 'nobody', password: PASSWORD, database: 'postgres' }));
  t.equal(unknownUser.code, '28P01', 'an unknown user fails the same way');

  const psqlOk = await runPsql(`postgres://postgres@127.0.0.1:${port}/postgres`, ['-w', '-A', '-t', '-c', 'select 7'], { env: { PGPASSWORD: PASSWORD } });
  t.equal(psqlOk.code, 0, 'psql with the right password works', { stderr: psqlOk.stderr });
  t.equal(psqlOk.stdout.trim(), '7');
  const psqlWrong = await runPsql(`postgres://postgres@127.0.0.1:${port}/postgres`, ['-w', '-c', 'select 7'], { env: { PGPASSWORD: 'wrong' } });
  t.equal(psqlWrong.code, 2, 'psql with a wrong password cannot connect');
  t.match(psqlWrong.stderr, /password authentication failed for user "postgres"/);
  const psqlNone = await runPsql(`postgres://postgres@127.0.0.1:${port}/postgres`, ['-w', '-c', 'select 7']);
  t.equal(psqlNone.code, 2, 'psql without a password cannot connect');
  t.match(psqlNone.stderr, /no password supplied/);

  await eventually(() => proxy.instance.relay.snapshot().open === 0, 'failed sessions to be closed');
  t.equal(proxy.instance.relay.snapshot().cancelKeys, 0, 'no cancel keys kept for failed sessions');
  return cluster;
}

t.test('SCRAM-SHA-256', async (t) => {
  const cluster = await checkAuth(t, 'scram-sha-256', 'SCRAM-SHA-256$');

  t.test('a client too slow to authenticate is told so', async (t) => {
    const impatient = await startPgfloat(t, cluster, { proxy: { startupTimeoutMs: 300 } }, { password: PASSWORD });
    let release: (password: string) => void = () => undefined;
    const slowPassword = new Promise<string>((resolve) => (release = resolve));
    const err = await rejectionOf(
      connectClient({ host: '127.0.0.1', port: impatient.readWritePort, user: 'postgres', database: 'postgres', password: () => slowPassword }),
    );
    release(PASSWORD);
    t.equal(err.code, '08P01');
    t.match(err.message, /timeout/);
    t.notMatch(err.message, /no complete startup packet/, 'the startup packet was complete: the message must not claim otherwise');
    await eventually(() => impatient.instance.relay.snapshot().open === 0, 'the session to be closed');
  });
});
t.test('md5', (t) => checkAuth(t, 'md5', 'md5'));
