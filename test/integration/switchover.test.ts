// Planned switchover through pgfloat on a real cluster: under load, refusals, rollback, CLI exit codes.
import t from 'tap';
import { operationResult, postOperation, runCli, TEST_TOKEN } from '../harness/cli';
import { queryOnce, rejectionOf } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { createWritesTable, missingAcked, startWriters } from '../harness/writers';

const admin = { listen: '127.0.0.1:0', token: TEST_TOKEN };

t.test('switchover under write load: no failed connection, no lost write, roles switched', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin });
  await createWritesTable(proxy.readWriteUrl());
  const writers = startWriters(proxy.readWriteUrl(), 8);
  await writers.acked(300);

  const { status, json } = await postOperation(proxy.adminUrl, '/switchover', {});
  t.equal(status, 202, `accepted: ${JSON.stringify(json)}`);
  t.match(json.message, /switching over from n1 to n2/);
  const op = await operationResult(proxy.adminUrl, String(json.operation));
  t.equal(op.state, 'succeeded', `switchover succeeded: ${op.result}`);
  t.match(op.result, /n2 is the primary; n1 is fenced and must be rejoined/, 'unmanaged: the old primary waits for an operator');
  const steps = op.steps.map((s) => s.message).join('\n');
  for (const step of [/holding new writers/, /sessions on n1 moved or closed/, /fence recorded/, /takes no more writes/, /replayed up to/, /promoting/, /complete/]) {
    t.match(steps, step, `progress shows ${step}`);
  }

  await writers.acked(300);
  const log = await writers.stop();
  t.same(log.connectFailures, [], 'no client failed to get a connection');
  const failures = [...log.failed.keys()];
  t.ok(failures.every((code) => code === '57P01'), `the only failures are sessions closed for the switchover (57P01): ${JSON.stringify([...log.failed])}`);
  t.equal(log.unknown, 0, 'no write lost its connection without an answer');
  const status2 = proxy.instance.status();
  t.equal(status2.primary, 'n2');
  t.equal(status2.epoch, 2);
  t.same(await missingAcked(cluster.standby.connectionString(), log), [], 'every acknowledged write is on the new primary');
  const rows = await queryOnce<{ transaction_read_only: string }>(proxy.readWriteUrl(), 'SHOW transaction_read_only');
  t.equal(rows[0]!.transaction_read_only, 'off', 'the new primary takes writes');
  t.equal(status2.nodes.find((n) => n.name === 'n1')!.fenced, true, 'the old primary is fenced');
  const oldPrimaryWrite = await rejectionOf(queryOnce(cluster.primary.connectionString(), 'INSERT INTO writes (client, seq) VALUES (0, 0)'));
  t.match(oldPrimaryWrite.message, /read-only transaction/, 'the old primary refuses writes even directly (fencing.action sql)');
  t.comment(`acked ${log.acked.length}, failed ${JSON.stringify([...log.failed])}, longest write gap ${log.longestGapMs} ms`);
});

t.test('switchover refusals: lagging standby, logical slot without --force, unknown node, no token; CLI exit codes', async (t) => {
  const cluster = await startCluster(t, { extraConf: { wal_level: 'logical' } });
  const proxy = await startPgfloat(t, cluster, { admin, switchover: { maxLagBytes: 64 * 1024 } });
  const env = { PGFLOAT_ADMIN_TOKEN: TEST_TOKEN };

  t.equal((await postOperation(proxy.adminUrl, '/switchover', {}, '')).status, 401, 'switchover without a token: 401');
  t.equal((await postOperation(proxy.adminUrl, '/rejoin/n1', {}, '')).status, 401, 'rejoin without a token: 401');
  t.equal((await postOperation(proxy.adminUrl, '/switchover', { to: 'nope' })).status, 404, 'unknown target: 404');
  const noToken = await runCli(['switchover', '--admin', proxy.adminUrl], { PGFLOAT_ADMIN_TOKEN: '' });
  t.equal(noToken.code, 1, 'the CLI without a token exits 1');
  t.match(noToken.stderr, /bearer token|admin.token/);

  await queryOnce(cluster.primary.connectionString(), "SELECT pg_create_logical_replication_slot('sub_a', 'test_decoding')");
  const slot = await runCli(['switchover', '--admin', proxy.adminUrl], env);
  t.equal(slot.code, 1, 'refused: exit 1');
  t.match(slot.stderr, /logical replication slots on n1 would be lost: sub_a .*--force/, `names the slot: ${slot.stderr}`);
  t.equal(slot.stderr.trim().split('\n').length, 1, 'a one-line reason');

  await queryOnce(cluster.standby.connectionString(), 'SELECT pg_wal_replay_pause()');
  await queryOnce(cluster.primary.connectionString(), 'CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 10) AS pad FROM generate_series(1, 5000) g');
  await eventually(() => (proxy.instance.status().nodes.find((n) => n.name === 'n2')!.replayLagBytes ?? 0) > 64 * 1024, 'n2 behind');
  const lag = await runCli(['switchover', '--force', '--admin', proxy.adminUrl], env);
  t.equal(lag.code, 1);
  t.match(lag.stderr, /n2 is \d+ bytes behind n1, over switchover.maxLagBytes/, 'names the lag');
  await queryOnce(cluster.standby.connectionString(), 'SELECT pg_wal_replay_resume()');

  const status = proxy.instance.status();
  t.equal(status.primary, 'n1', 'refusals changed nothing');
  t.equal(status.epoch, 1);
  t.equal(status.writesHeld, false);
  await queryOnce(proxy.readWriteUrl(), 'SELECT 1');

  await eventually(() => (proxy.instance.status().nodes.find((n) => n.name === 'n2')!.replayLagBytes ?? 1) === 0, 'n2 caught up');
  await queryOnce(cluster.primary.connectionString(), "SELECT pg_drop_replication_slot('sub_a')");
  const ok = await runCli(['switchover', '--to', 'n2', '--admin', proxy.adminUrl], env);
  t.equal(ok.code, 0, `switchover exits 0: ${ok.stderr}`);
  t.match(ok.stdout, /switching over from n1 to n2/);
  t.match(ok.stdout, /promoting/, 'the CLI prints progress');
  t.match(ok.stdout, /n2 is the primary/);
});

t.test('a standby that does not catch up in time: the switchover rolls back to the old primary', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin, switchover: { catchUpTimeoutMs: 1500 } });
  await queryOnce(proxy.readWriteUrl(), 'CREATE TABLE kept (id int)');
  await queryOnce(cluster.standby.connectionString(), 'SELECT pg_wal_replay_pause()');
  await queryOnce(proxy.readWriteUrl(), 'INSERT INTO kept VALUES (1)');
  const { status, json } = await postOperation(proxy.adminUrl, '/switchover', {});
  t.equal(status, 202);
  const op = await operationResult(proxy.adminUrl, String(json.operation));
  t.equal(op.state, 'failed');
  t.match(op.result, /switchover rolled back: n2 did not catch up.*n1 stays primary/);
  const s = proxy.instance.status();
  t.equal(s.primary, 'n1');
  t.equal(s.epoch, 1, 'no new epoch');
  t.equal(s.nodes.find((n) => n.name === 'n1')!.fenced, false, 'n1 unfenced again');
  await queryOnce(proxy.readWriteUrl(), 'INSERT INTO kept VALUES (2)');
  t.same((await queryOnce<{ n: string }>(proxy.readWriteUrl(), 'SELECT count(*) AS n FROM kept'))[0]!.n, '2', 'n1 takes writes again through pgfloat');
  await queryOnce(cluster.standby.connectionString(), 'SELECT pg_wal_replay_resume()');
  t.equal((await queryOnce<{ r: boolean }>(cluster.standby.connectionString(), 'SELECT pg_is_in_recovery() AS r'))[0]!.r, true, 'n2 was never promoted');
});
