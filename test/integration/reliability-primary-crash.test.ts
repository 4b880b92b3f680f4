// Reliability: the primary killed, stopped cleanly, or its postmaster crashed with backends left behind; and SIGKILL under synchronous replication.
import t from 'tap';
import { operationResult, postOperation, TEST_TOKEN } from '../harness/cli';
import { childPids, crashServer, isAlive, nodeStatus, tryQuery } from '../harness/faults';
import { eventually } from '../harness/pgfloat';
import { startScenario } from '../harness/reliability';

const FAILOVER_MS = 60_000;

t.test('primary SIGKILLed: the standby takes over, nothing replicated is lost', async (t) => {
  const s = await startScenario(t, 'primary SIGKILL');
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await s.writers.acked(50);
  const report = await s.finish({ faultAt });
  t.equal(report.finalPrimary, 'n2');
  t.ok(nodeStatus(s.proxy.instance.status(), 'n1').fenced, 'n1 is fenced');
});

t.test('primary stopped cleanly (pg_ctl stop -m fast): no acknowledged write lost', async (t) => {
  const s = await startScenario(t, 'primary clean stop');
  const faultAt = Date.now();
  // A clean shutdown sends the standby everything up to its shutdown checkpoint before exiting.
  await s.cluster.primary.stop('fast');
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await s.writers.acked(50);
  const report = await s.finish({ faultAt });
  t.equal(report.lost.length, 0, 'nothing lost: the standby had all of it');
});

t.test("primary's postmaster SIGKILLed alone, its backends left behind", async (t) => {
  const s = await startScenario(t, 'postmaster crash, backends left');
  const postmaster = s.cluster.primary.postmasterPid()!;
  const backends = childPids(postmaster);
  const faultAt = Date.now();
  process.kill(postmaster, 'SIGKILL');
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await s.writers.acked(50);
  // Orphaned backends notice the dead postmaster and exit on their own.
  await eventually(() => !backends.some(isAlive), 'the orphaned backends to exit', 30_000);
  const report = await s.finish({ faultAt });
  t.equal(report.finalPrimary, 'n2');
});

t.test('synchronous replication: SIGKILL loses no acknowledged write, the lone new primary takes writes, rejoin restores it', async (t) => {
  const s = await startScenario(t, 'primary SIGKILL, synchronous replication', {
    cluster: { extraConf: { synchronous_standby_names: '*' } },
    overrides: { admin: { listen: '127.0.0.1:0', token: TEST_TOKEN } },
    managed: true,
  });
  t.same(await tryQuery(s.cluster.primary.connectionString(), "SELECT sync_state FROM pg_stat_replication"), [{ sync_state: 'sync' }], 'n2 is a synchronous standby');
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await s.writers.acked(50); // would time out if commits waited for a standby that is gone
  const lifted = s.proxy.instance.status().synchronousLifted;
  t.match(lifted, { node: 'n2', names: '*' }, '/status says synchronous replication is lifted on n2');
  t.same(await tryQuery(s.cluster.standby.connectionString(), 'SHOW synchronous_standby_names'), [{ synchronous_standby_names: '' }]);

  const rejoin = await postOperation(s.proxy.adminUrl, '/rejoin/n1', {});
  t.equal(rejoin.status, 202, `rejoin accepted: ${JSON.stringify(rejoin.json)}`);
  t.equal((await operationResult(s.proxy.adminUrl, String(rejoin.json.operation))).state, 'succeeded', 'n1 rejoined as a standby');
  await eventually(() => s.proxy.instance.status().synchronousLifted === null, 'synchronous replication to be restored', 30_000);
  const names = await tryQuery<{ synchronous_standby_names: string }>(s.cluster.standby.connectionString(), 'SHOW synchronous_standby_names');
  t.same(names, [{ synchronous_standby_names: '*' }], "n2's setting is back");
  await eventually(
    async () => ((await tryQuery<{ sync_state: string }>(s.cluster.standby.connectionString(), 'SELECT sync_state FROM pg_stat_replication')) ?? [])[0]?.sync_state === 'sync',
    'n1 to be a synchronous standby of n2',
    30_000,
  );
  await s.writers.acked(50);
  const report = await s.finish({ faultAt, synchronous: true });
  t.equal(report.lost.length, 0, 'no acknowledged write lost');
});

t.test('failover.keepSynchronousWhenAlone: the new primary keeps the setting, and commits wait for a standby', async (t) => {
  const s = await startScenario(t, 'primary SIGKILL, synchronous replication kept', {
    cluster: { extraConf: { synchronous_standby_names: '*' } },
    overrides: { failover: { keepSynchronousWhenAlone: true } },
  });
  await crashServer(s.cluster.primary);
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  t.equal(s.proxy.instance.status().synchronousLifted, null, 'nothing lifted');
  t.same(await tryQuery(s.cluster.standby.connectionString(), 'SHOW synchronous_standby_names'), [{ synchronous_standby_names: '*' }], 'n2 keeps it');
  await eventually(
    async () => ((await tryQuery(s.cluster.standby.connectionString(), "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'")) ?? []).length > 0,
    'a commit on n2 to wait for a synchronous standby',
    30_000,
  );
  t.pass('commits on the lone new primary wait for a standby');
  await s.writers.stop();
});
