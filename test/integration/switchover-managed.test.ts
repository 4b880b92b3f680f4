// Managed nodes: a switchover rejoins the old primary as a standby; two switchovers return the roles; rejoin after a failover.
import t from 'tap';
import { operationResult, postOperation, runCli, TEST_TOKEN } from '../harness/cli';
import { queryOnce } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { createWritesTable, missingAcked, startWriters } from '../harness/writers';

const admin = { listen: '127.0.0.1:0', token: TEST_TOKEN };
const env = { PGFLOAT_ADMIN_TOKEN: TEST_TOKEN };

t.test('two switchovers under load return the roles to the start, cluster whole after each', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin }, { managed: true });
  await createWritesTable(proxy.readWriteUrl());
  const writers = startWriters(proxy.readWriteUrl(), 6);
  await writers.acked(200);

  for (const [from, to, epoch] of [['n1', 'n2', 2], ['n2', 'n1', 3]] as const) {
    const run = await runCli(['switchover', '--admin', proxy.adminUrl], env);
    t.equal(run.code, 0, `switchover ${from} -> ${to} exits 0: ${run.stderr}`);
    t.match(run.stdout, new RegExp(`switching over from ${from} to ${to}`));
    t.match(run.stdout, new RegExp(`rejoining ${from} as a standby of ${to}`), 'progress shows the rejoin');
    t.match(run.stdout, new RegExp(`${to} is the primary; ${from} follows it as a standby \\((rewound|rebuilt)\\)`));
    const s = proxy.instance.status();
    t.equal(s.primary, to);
    t.equal(s.epoch, epoch);
    t.equal(s.degenerate, false, 'not degenerate: the old primary is a standby again');
    t.same(s.nodes.map((n) => n.fenced), [false, false], 'nothing fenced');
    await eventually(() => proxy.instance.status().standbys.includes(from), `${from} serves read-only clients`);
    await writers.acked(100);
  }
  const log = await writers.stop();
  t.same(log.connectFailures, [], 'no failed connection over two switchovers');
  t.ok([...log.failed.keys()].every((code) => code === '57P01'), `failures only from closed sessions: ${JSON.stringify([...log.failed])}`);
  t.equal(log.unknown, 0);
  t.same(await missingAcked(cluster.primary.connectionString(), log), [], 'every acknowledged write on n1, primary again');
  await eventually(async () => (await missingAcked(cluster.standby.connectionString(), log)).length === 0, 'n2 has them all too');
  const ro = await queryOnce<{ r: boolean }>(proxy.readOnlyUrl(), 'SELECT pg_is_in_recovery() AS r');
  t.equal(ro[0]!.r, true, 'read-only clients reach the standby');
  t.comment(`acked ${log.acked.length}, failed ${JSON.stringify([...log.failed])}, longest gap ${log.longestGapMs} ms`);
});

t.test('pgfloat rejoin after a failover where the old primary diverged; --rebuild; refusals', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin, fencing: { action: 'none' } }, { managed: true });
  await queryOnce(proxy.readWriteUrl(), 'CREATE TABLE t (id int, origin text)');
  await queryOnce(proxy.readWriteUrl(), "INSERT INTO t VALUES (1, 'before')");
  // The table itself may not have replicated yet (42P01).
  const replicated = (): Promise<boolean> =>
    queryOnce(cluster.standby.connectionString(), 'SELECT 1 FROM t').then(
      (rows) => rows.length === 1,
      (err: { code?: string }) => (err.code === '42P01' ? false : Promise.reject(err)),
    );
  await eventually(replicated, 'replicated');

  // Cut the standby off, write on n1 only, then fail over: n1 holds transactions n2 never got.
  await queryOnce(cluster.standby.connectionString(), "ALTER SYSTEM SET primary_conninfo = ''");
  await queryOnce(cluster.standby.connectionString(), 'SELECT pg_reload_conf()');
  await eventually(async () => (await queryOnce(cluster.standby.connectionString(), 'SELECT 1 FROM pg_stat_wal_receiver')).length === 0, 'n2 stops streaming');
  await queryOnce(cluster.primary.connectionString(), "INSERT INTO t VALUES (2, 'diverged')");
  const failover = await runCli(['failover', '--to', 'n2', '--allow-data-loss', '--admin', proxy.adminUrl], env);
  t.equal(failover.code, 0, `failover: ${failover.stderr}`);
  t.equal(proxy.instance.status().primary, 'n2');
  await queryOnce(proxy.readWriteUrl(), "INSERT INTO t VALUES (3, 'after')");

  const refused = await runCli(['rejoin', 'n2', '--admin', proxy.adminUrl], env);
  t.equal(refused.code, 1, 'rejoining the primary is refused');
  t.match(refused.stderr, /n2 is the primary/);

  const rejoin = await runCli(['rejoin', 'n1', '--admin', proxy.adminUrl], env);
  t.equal(rejoin.code, 0, `rejoin exits 0: ${rejoin.stderr}`);
  t.match(rejoin.stdout, /pg_rewind/i, 'progress names pg_rewind');
  t.match(rejoin.stdout, /n1 follows n2 as a standby \(rewound\)/);
  await eventually(() => !proxy.instance.status().nodes.find((n) => n.name === 'n1')!.fenced, 'n1 unfenced');
  const rows = await queryOnce<{ origin: string }>(cluster.primary.connectionString(), 'SELECT origin FROM t ORDER BY id');
  t.same(rows.map((r) => r.origin), ['before', 'after'], 'the diverged row is gone from n1, the new primary\'s row is there');
  t.equal(proxy.instance.status().degenerate, false);

  const rebuild = await runCli(['rejoin', 'n1', '--rebuild', '--admin', proxy.adminUrl], env);
  t.equal(rebuild.code, 0, `rebuild exits 0: ${rebuild.stderr}`);
  t.match(rebuild.stdout, /pg_basebackup/);
  t.match(rebuild.stdout, /\(rebuilt\)/);
  await queryOnce(proxy.readWriteUrl(), "INSERT INTO t VALUES (4, 'rebuilt')");
  await eventually(async () => (await queryOnce(cluster.primary.connectionString(), "SELECT 1 FROM t WHERE origin = 'rebuilt'")).length === 1, 'rebuilt n1 streams');
  const ops = (await (await fetch(`${proxy.adminUrl}/operations`)).json()) as { operations: Array<{ kind: string; state: string }> };
  t.same(ops.operations.map((o) => `${o.kind} ${o.state}`), ['failover succeeded', 'rejoin succeeded', 'rejoin succeeded'], 'GET /operations lists them');
  const running = await postOperation(proxy.adminUrl, '/rejoin/n1', {});
  const again = await postOperation(proxy.adminUrl, '/switchover', {});
  t.equal(again.status, 409, 'one long operation at a time');
  t.match(again.json.message, /rejoin .* is in progress/);
  t.equal((await operationResult(proxy.adminUrl, String(running.json.operation))).state, 'succeeded');
});
