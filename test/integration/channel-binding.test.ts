// SCRAM channel binding through pgfloat when both legs are TLS: the client is not offered
// SCRAM-SHA-256-PLUS (it would bind to pgfloat's certificate, which the server cannot check), and
// a client that could bind ("y") is signed again for the server, which would take that flag for a
// downgrade attack. libpq's default channel_binding=prefer works; require fails clearly.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { startCluster } from '../harness/cluster';
import { connectClient, runPsql } from '../harness/clients';
import { operationResult, postOperation, TEST_TOKEN } from '../harness/cli';
import { startPgfloat } from '../harness/pgfloat';
import { makeTestCa } from '../harness/test-ca';

const PASSWORD = 'sekret';
const SERVER_LEG = 'select s.ssl from pg_stat_ssl s where s.pid = pg_backend_pid()';

t.test('channel binding with TLS on both legs', async (t) => {
  const ca = await makeTestCa(t);
  const serverCert = await ca.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const proxyCert = await ca.issue('proxy', 'pgfloat', ['localhost', '127.0.0.1']);
  const cluster = await startCluster(t, { password: PASSWORD, authMethod: 'scram-sha-256', tls: { ...serverCert, ca: ca.ca } });
  const pgfloat = await startPgfloat(t, cluster, { tls: proxyCert, serverTls: { mode: 'verify-full', ca: ca.ca } }, { password: PASSWORD });
  const url = (params: string): string => `postgres://postgres@127.0.0.1:${pgfloat.readWritePort}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.ca)}${params}`;

  // Straight to the server, libpq binds: the servers really do offer SCRAM-SHA-256-PLUS.
  const direct = await runPsql(`${cluster.primary.connectionString()}&channel_binding=require`, ['-A', '-t', '-c', 'select 1']);
  t.equal(direct.code, 0, 'directly, channel_binding=require works (the server offers PLUS)', { stderr: direct.stderr });

  const preferred = await runPsql(url(''), ['-w', '-A', '-t', '-c', SERVER_LEG, '-c', 'select current_user'], { env: { PGPASSWORD: PASSWORD } });
  t.equal(preferred.code, 0, "libpq's default channel_binding=prefer logs in through pgfloat", { stderr: preferred.stderr });
  t.equal(preferred.stdout.trim(), 't\npostgres', 'over a TLS server leg, as the role');

  const required = await runPsql(url('&channel_binding=require'), ['-w', '-c', 'select 1'], { env: { PGPASSWORD: PASSWORD }, timeoutMs: 30_000 });
  t.equal(required.code, 2, 'channel_binding=require cannot connect');
  t.match(required.stderr, /channel binding is required, but server did not offer an authentication method that supports channel binding/, 'and libpq says why');

  const disabled = await runPsql(url('&channel_binding=disable'), ['-w', '-A', '-t', '-c', 'select 2'], { env: { PGPASSWORD: PASSWORD } });
  t.equal(disabled.code, 0, 'channel_binding=disable works', { stderr: disabled.stderr });

  const wrong = await runPsql(url(''), ['-w', '-c', 'select 1'], { env: { PGPASSWORD: 'not-it' } });
  t.equal(wrong.code, 2, 'a wrong password still fails');
  t.match(wrong.stderr, /password authentication failed for user "postgres"/, "with the server's own message");

  const caPem = readFileSync(ca.ca, 'utf8');
  const pg = await connectClient({ host: '127.0.0.1', port: pgfloat.readWritePort, user: 'postgres', password: PASSWORD, database: 'postgres', ssl: { ca: caPem }, enableChannelBinding: true } as never);
  t.same((await pg.query<{ ssl: boolean }>(SERVER_LEG)).rows, [{ ssl: true }], 'node-postgres with enableChannelBinding logs in too');
  await pg.end();

  const plainClient = await runPsql(`postgres://postgres@127.0.0.1:${pgfloat.readWritePort}/postgres?sslmode=disable`, ['-w', '-A', '-t', '-c', SERVER_LEG], { env: { PGPASSWORD: PASSWORD } });
  t.equal(plainClient.code, 0, 'a plaintext client logs in over the TLS server leg', { stderr: plainClient.stderr });
  t.equal(plainClient.stdout.trim(), 't');

  t.test('without the auth query, a client that could bind is told what to do', async (t) => {
    const blind = await startPgfloat(t, cluster, { tls: proxyCert, serverTls: { mode: 'verify-full', ca: ca.ca }, sessions: { authQuery: 'SELECT NULL::text WHERE $1::text IS NOT NULL' } }, { password: PASSWORD });
    const refused = await runPsql(`postgres://postgres@127.0.0.1:${blind.readWritePort}/postgres?sslmode=require`, ['-w', '-c', 'select 1'], { env: { PGPASSWORD: PASSWORD } });
    t.equal(refused.code, 2);
    t.match(refused.stderr, /pgfloat cannot relay this SCRAM login to n1 over TLS: the auth query \(sessions.authQuery\) gave no SCRAM verifier/, 'the refusal names the cause');
    t.match(refused.stderr, /channel_binding=disable/, 'and the way around it');
    const disabled = await runPsql(`postgres://postgres@127.0.0.1:${blind.readWritePort}/postgres?sslmode=require&channel_binding=disable`, ['-w', '-A', '-t', '-c', 'select 3'], { env: { PGPASSWORD: PASSWORD } });
    t.equal(disabled.code, 0, 'channel_binding=disable still works there', { stderr: disabled.stderr });
  });
  // Last: the switchover leaves two primaries (the old one is fenced, not stopped, when pgfloat does not manage it).
  t.test('a session that logged in through the bridge moves at a switchover', async (t) => {
    // The first instance would see the new primary as a second one, and fence it.
    await pgfloat.stop();
    const managed = await startPgfloat(t, cluster, { tls: proxyCert, serverTls: { mode: 'verify-full', ca: ca.ca }, admin: { listen: '127.0.0.1:0', token: TEST_TOKEN } }, { password: PASSWORD });
    const client = await connectClient({ host: '127.0.0.1', port: managed.readWritePort, user: 'postgres', password: PASSWORD, database: 'postgres', ssl: { ca: caPem }, enableChannelBinding: true } as never);
    t.teardown(() => client.end());
    await client.query("SET work_mem = '7MB'");
    const { status, json } = await postOperation(managed.adminUrl, '/switchover', {});
    t.equal(status, 202, `switchover accepted: ${JSON.stringify(json)}`);
    const op = await operationResult(managed.adminUrl, String(json.operation));
    t.equal(op.state, 'succeeded', `switchover succeeded: ${op.result}`);
    const { rows } = await client.query<{ port: number; w: string; ssl: boolean }>(`SELECT inet_server_port() AS port, current_setting('work_mem') AS w, (${SERVER_LEG}) AS ssl`);
    t.same(rows, [{ port: cluster.standby.port, w: '7MB', ssl: true }], 'it is on the new primary, with its setting, over TLS');
    t.same(client.errors, []);
  });

});
