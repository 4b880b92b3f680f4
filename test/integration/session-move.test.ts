// Sessions survive a switchover: idle sessions move to the new primary with their settings, prepared statements and cancel key; those that cannot move are closed with 57P01 and a reason.

import t from 'tap';
import type { Client } from 'pg';
import type { AuthMethod } from '../../src/sandbox/local-cluster';
import { operationResult, postOperation, runCli, TEST_TOKEN } from '../harness/cli';
import { backendKey, connectClient, queryOnce, rejectionOf, sendCancel, type ObservedClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { crashServer } from '../harness/faults';
import { startPgfloat, type RunningPgfloat } from '../harness/pgfloat';
import { eventually, waitForActiveQuery } from '../harness/waiting';

const admin = { listen: '127.0.0.1:0', token: TEST_TOKEN };

async function switchOver(t: tap.Test, proxy: RunningPgfloat): Promise<void> {
  const { status, json } = await postOperation(proxy.adminUrl, '/switchover', {});
  t.equal(status, 202, `switchover accepted: ${JSON.stringify(json)}`);
  const op = await operationResult(proxy.adminUrl, String(json.operation));
  t.equal(op.state, 'succeeded', `switchover succeeded: ${op.result}`);
}

async function serverPort(client: Client): Promise<number> {
  const { rows } = await client.query<{ port: number }>('SELECT inet_server_port() AS port');
  return rows[0]!.port;
}

t.test('a switchover moves idle sessions with their state; sessions with state that cannot move are closed with 57P01', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin });
  const url = proxy.readWriteUrl();
  await queryOnce(url, 'CREATE SCHEMA app; CREATE TABLE app.items (id int); INSERT INTO app.items VALUES (42)');

  const stateful = await connectClient({ connectionString: url, application_name: 'mover' });
  t.teardown(() => stateful.end());
  await stateful.query("SET search_path TO app, public; SET work_mem = '7MB'; SET TimeZone = 'Pacific/Auckland'");
  await stateful.query("SET application_name = 'renamed'");
  await stateful.query('PREPARE plus_one(int) AS SELECT $1 + 1 AS v');
  const named = { name: 'doubled', text: 'SELECT $1::int * 2 AS v' };
  t.same((await stateful.query({ ...named, values: [2] })).rows, [{ v: 4 }]);
  const key = backendKey(stateful);
  t.equal(await serverPort(stateful), cluster.primary.port, 'on the primary before');

  const fresh = await connectClient(url);
  t.teardown(() => fresh.end());
  const tempHolder = await connectClient(url);
  t.teardown(() => tempHolder.end());
  await tempHolder.query('CREATE TEMP TABLE scratch (x int)');

  await switchOver(t, proxy);

  t.equal(await serverPort(stateful), cluster.standby.port, 'the session now lives on the new primary');
  t.same(stateful.errors, [], 'the moved client saw no error');
  const settings = await stateful.query<{ search_path: string; work_mem: string; tz: string; app: string }>(
    "SELECT current_setting('search_path') AS search_path, current_setting('work_mem') AS work_mem, current_setting('TimeZone') AS tz, current_setting('application_name') AS app",
  );
  t.same(settings.rows, [{ search_path: 'app, public', work_mem: '7MB', tz: 'Pacific/Auckland', app: 'renamed' }], 'its settings came along');
  t.same((await stateful.query('SELECT id FROM items')).rows, [{ id: 42 }], 'its search_path works');
  t.same((await stateful.query('EXECUTE plus_one(1)')).rows, [{ v: 2 }], 'its SQL prepared statement came along');
  t.same((await stateful.query({ ...named, values: [5] })).rows, [{ v: 10 }], 'its protocol-level named statement came along (pg does not parse it again)');
  await stateful.query('INSERT INTO items VALUES (1)');
  t.same((await stateful.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows, [{ r: false }], 'and it writes');

  const running = stateful.query('SELECT pg_sleep(60)');
  running.catch(() => undefined);
  await waitForActiveQuery(cluster.standby, 'renamed', 'SELECT pg_sleep(60)');
  await sendCancel(proxy.readWritePort, key.processId, key.secretKey);
  t.equal((await rejectionOf(running)).code, '57014', 'the cancel key the client got from the old primary cancels on the new one');
  t.same(backendKey(stateful), key, 'the client still holds its first key');

  t.equal(await serverPort(fresh), cluster.standby.port, 'a session that had sent nothing moved too');
  t.same(fresh.errors, [], 'without an error');

  await eventually(() => tempHolder.errors.length > 0, 'the session that could not move to be closed');
  const closed = tempHolder.errors[0]!;
  t.equal(closed.code, '57P01', 'a session with a temporary table cannot move: closed with 57P01');
  t.match((closed as Error & { detail?: string }).detail, /could not move the session: it holds what cannot move: 1 temporary object/, `and told why: ${JSON.stringify(closed)}`);

  const moves = proxy.instance.status().sessionMoves;
  t.equal(moves.moving, 0, 'no session left moving');
  t.ok(moves.moved >= 2, `sessions moved: ${JSON.stringify(moves)}`);
  t.equal(moves.notMoved.state, 1, 'one not moved, for its state');
  const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
  t.match(metrics, /pgfloat_sessions_moved_total [1-9]/, 'moves are counted in /metrics');
  t.match(metrics, /pgfloat_sessions_not_moved_total\{reason="state"\} 1/);
  const printed = await runCli(['status', '--admin', proxy.adminUrl]);
  t.match(printed.stdout, /sessions moved: [1-9]\d*; moving now: 0; closed because they could not move: 1 \(state 1\)/, '`pgfloat status` says it too');
});

t.test('a session busy at the switchover moves once its transaction ends, and the query it sent meanwhile runs on the new primary', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin });
  const client = await connectClient({ connectionString: proxy.readWriteUrl(), application_name: 'busy-mover' });
  t.teardown(() => client.end());
  await client.query('BEGIN');
  await client.query("SET LOCAL work_mem = '9MB'");
  const finishing = (async (): Promise<number> => {
    await client.query('SELECT pg_sleep(0.5)');
    await client.query('COMMIT');
    return serverPort(client);
  })();
  await switchOver(t, proxy);
  t.equal(await finishing, cluster.standby.port, 'the query after COMMIT ran on the new primary');
  t.same(client.errors, [], 'no error');
  t.same((await client.query<{ w: string }>("SELECT current_setting('work_mem') AS w")).rows, [{ w: '4MB' }], 'SET LOCAL ended with its transaction');
});

t.test('with sessions.move off, idle sessions are closed with 57P01 at a switchover, as before', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin, sessions: { move: false } });
  const client = await connectClient(proxy.readWriteUrl());
  t.teardown(() => client.end());
  await switchOver(t, proxy);
  await eventually(() => client.errors.length > 0, 'the idle session to be closed');
  t.equal(client.errors[0]!.code, '57P01');
  t.same(proxy.instance.status().sessionMoves, { moving: 0, moved: 0, notMoved: {} });
});

t.test('the primary crashes: idle sessions whose state pgfloat knows move to the promoted standby; the others are closed', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin });
  const url = proxy.readWriteUrl();
  const untouched = await connectClient(url);
  t.teardown(() => untouched.end());
  const used = await connectClient(url);
  t.teardown(() => used.end());
  await used.query("SET work_mem = '6MB'");

  await crashServer(cluster.primary);
  await eventually(() => proxy.instance.status().primary === 'n2', 'the standby to be promoted');

  t.equal(await serverPort(untouched), cluster.standby.port, 'the session that had sent nothing since its login lives on the new primary');
  t.same(untouched.errors, [], 'and its client saw no error');
  await eventually(() => used.errors.length > 0, 'the session with unknown state to be closed');
  t.match(used.errors[0]!.message, /terminating connection/, `the other got the server's own last words: ${used.errors[0]!.message}`);
  const moves = proxy.instance.status().sessionMoves;
  t.equal(moves.moved, 1, `one session moved: ${JSON.stringify(moves)}`);
  t.equal(moves.moving, 0);
});

async function passwordMove(t: tap.Test, authMethod: AuthMethod, workers = 1): Promise<void> {
  const password = 'sekret';
  const cluster = await startCluster(t, { password, authMethod });
  const proxy = await startPgfloat(t, cluster, { admin, proxy: { workers } }, { password });
  const client: ObservedClient = await connectClient({ host: '127.0.0.1', port: proxy.readWritePort, user: 'postgres', password, database: 'postgres' });
  t.teardown(() => client.end());
  await client.query("SET work_mem = '5MB'");
  await switchOver(t, proxy);
  t.equal(await serverPort(client), cluster.standby.port, `a ${authMethod} session moved: logged in again without the password`);
  t.same((await client.query<{ u: string; w: string }>("SELECT current_user AS u, current_setting('work_mem') AS w")).rows, [{ u: 'postgres', w: '5MB' }]);
  t.same(client.errors, []);
  // A worker reports its counts a few milliseconds after they change.
  await eventually(() => proxy.instance.status().sessionMoves.moved === 1, 'the move counted in /status');
}

t.test('SCRAM-SHA-256 sessions move', (t) => passwordMove(t, 'scram-sha-256'));
t.test('md5 sessions move', (t) => passwordMove(t, 'md5'));
t.test('SCRAM-SHA-256 sessions move in a relay worker, which asks the control process for the verifier', (t) => passwordMove(t, 'scram-sha-256', 2));
