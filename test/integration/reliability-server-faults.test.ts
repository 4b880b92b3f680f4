// Reliability: a hung primary resumed, the old primary restarted, a double failure, a lagging standby, flapping, a failing promotion or fencing command.
import t from 'tap';
import { queryOnce } from '../harness/clients';
import { clientBackendCount, crashServer, freezePid, freezeServer, metricValue, nodeStatus, processState, sleep, tryQuery } from '../harness/faults';
import { eventually } from '../harness/pgfloat';
import { holdsFor } from '../harness/waiting';
import { startScenario } from '../harness/reliability';

const FAILOVER_MS = 90_000;

t.test('primary hung (SIGSTOP of every process), resumed after the failover: never a client again, its old sessions gone', async (t) => {
  const s = await startScenario(t, 'primary hung, resumed after the failover');
  const frozen = freezeServer(t, s.cluster.primary);
  const faultAt = Date.now();
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await s.writers.acked(50);
  frozen.thaw();
  await eventually(() => nodeStatus(s.proxy.instance.status(), 'n1').roguePrimary, 'n1 to be seen running as a (rogue) primary', 60_000);
  await s.writers.acked(50);
  // The statements that waited in n1's socket buffers run when it resumes; their clients are gone.
  await eventually(async () => (await clientBackendCount(s.cluster.primary).catch(() => -1)) === 0, 'n1 to have no client session', 30_000);
  t.equal(s.proxy.instance.status().primary, 'n2', 'writes stay on n2');
  const report = await s.finish({ faultAt });
  t.same(report.unreadable, [], 'both nodes read');
});

t.test('old primary restarted as a primary after the failover: fenced, no traffic, alert raised', async (t) => {
  const s = await startScenario(t, 'old primary restarted as primary');
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await s.cluster.primary.start();
  await eventually(() => nodeStatus(s.proxy.instance.status(), 'n1').roguePrimary, 'n1 to be flagged as a rogue primary', 60_000);
  t.equal(await metricValue(s.proxy.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n1' }), 1, 'pgfloat_node_rogue_primary{node="n1"} is 1');
  await s.writers.acked(100);
  t.equal(await clientBackendCount(s.cluster.primary), 0, 'n1 has no client session');
  await s.finish({ faultAt });
});

t.test('double failure: the new primary dies before the old one rejoined; the stale old primary is never promoted or routed', async (t) => {
  const s = await startScenario(t, 'double failure');
  await crashServer(s.cluster.primary);
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await s.writers.acked(50);
  await crashServer(s.cluster.standby);
  // The stale old primary comes back (on the old timeline, without the writes n2 took).
  await s.cluster.primary.start();
  await eventually(() => nodeStatus(s.proxy.instance.status(), 'n1').health === 'up', 'n1 to answer', 30_000);
  await eventually(() => /no healthy standby/.test(s.proxy.instance.status().failoverBlocked ?? ''), 'the failover to be blocked', 30_000);
  const stale = await holdsFor(2000, 'n1 answers heartbeats (200 ms apart) and the failover is already due: a wrong promotion of n1 would start within one', () => {
    const now = s.proxy.instance.status();
    return now.epoch === 2 && now.primary === null && !now.phase.startsWith('failover:');
  });
  t.ok(stale.held, `n1 was neither promoted nor routed: ${stale.summary}`);
  let status = s.proxy.instance.status();
  t.equal(status.primary, null, 'no primary routed');
  t.equal(status.epoch, 2, 'the epoch did not move: n1 was not promoted');
  t.ok(nodeStatus(status, 'n1').fenced, 'n1 stays fenced');
  const refusal = await queryOnce(s.proxy.readWriteUrl(), 'select 1').then(() => undefined, (err: Error & { code?: string }) => err);
  t.equal(refusal?.code, '57P03', `writers are refused with 57P03: ${refusal?.message}`);
  t.equal(await clientBackendCount(s.cluster.primary), 0, 'n1 got no client session');
  // The recorded primary comes back: writes resume on it.
  await s.cluster.standby.start();
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'n2 to be routed again', 60_000);
  await s.writers.acked(50);
  status = s.proxy.instance.status();
  t.equal(status.epoch, 2, 'still epoch 2');
  await s.finish({ finalPrimary: 'n2', connectFailuresExpected: true });
});

t.test('standby lagging past failover.maxLagBytes when the primary dies: no promotion and why; --allow-data-loss promotes', async (t) => {
  const s = await startScenario(t, 'standby lagging past the limit, then --allow-data-loss', { overrides: { failover: { maxLagBytes: 65536 } } });
  // WAL the standby never receives: its WAL receiver is stopped while the primary writes ~2 MB.
  await queryOnce(s.cluster.standby.connectionString(), "ALTER SYSTEM SET primary_conninfo = ''");
  await queryOnce(s.cluster.standby.connectionString(), 'SELECT pg_reload_conf()');
  await eventually(async () => (await tryQuery(s.cluster.standby.connectionString(), 'SELECT 1 FROM pg_stat_wal_receiver'))?.length === 0, 'n2 to stop receiving');
  await queryOnce(s.cluster.primary.connectionString(), "CREATE TABLE filler AS SELECT repeat('x', 1000) AS v FROM generate_series(1, 2000)");
  await eventually(() => (nodeStatus(s.proxy.instance.status(), 'n2').receiveLagBytes ?? 0) > 65536, 'pgfloat to see the lag', 30_000);
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await eventually(() => /maxLagBytes/.test(s.proxy.instance.status().failoverBlocked ?? ''), 'the failover to be blocked by the lag limit', 60_000);
  t.equal(s.proxy.instance.status().epoch, 1, 'no promotion');
  const refusal = await queryOnce(s.proxy.readWriteUrl(), 'select 1').then(() => undefined, (err: Error & { code?: string; detail?: string }) => err);
  t.match(refusal?.detail ?? '', /maxLagBytes/, `the refusal says why: ${refusal?.detail}`);
  s.proxy.instance.operator({ command: 'failover', allowDataLoss: true });
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'n2 promoted with --allow-data-loss', FAILOVER_MS);
  await s.writers.acked(50);
  const report = await s.finish({ faultAt, connectFailuresExpected: true, allowDataLoss: true });
  t.ok(report.lost.length > 0, `the writes n2 never received are lost, as accepted: ${report.lost.length}`);
});

t.test('flapping: the primary hangs for less than the detection window, again and again: no failover', async (t) => {
  const s = await startScenario(t, 'flapping primary (5 short hangs)');
  const detectionMs = s.proxy.config.monitor.timeoutMs * s.proxy.config.monitor.failuresBeforeDown;
  for (let i = 0; i < 5; i++) {
    const frozen = freezeServer(t, s.cluster.primary);
    await sleep(detectionMs / 3);
    frozen.thaw();
    await s.writers.acked(20);
  }
  const status = s.proxy.instance.status();
  t.equal(status.epoch, 1, 'no failover');
  t.equal(status.primary, 'n1', 'n1 is still the primary');
  t.notOk(nodeStatus(status, 'n1').fenced, 'n1 was never fenced');
  await s.finish({ finalPrimary: 'n1' });
});

t.test('pg_promote() cannot finish: the failover fails and is retried until it can', async (t) => {
  const s = await startScenario(t, 'promotion fails, then a retry succeeds', { overrides: { failover: { promoteTimeoutMs: 2000, retryIntervalMs: 1000 } } });
  const startup = await tryQuery<{ pid: number }>(s.cluster.standby.connectionString(), "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'");
  const frozen = freezePid(t, startup![0]!.pid);
  await eventually(() => processState(startup![0]!.pid) === 'T', "n2's startup process to stop", 10_000);
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await eventually(() => s.proxy.instance.status().phase === 'failed', 'the failover to fail', FAILOVER_MS);
  t.equal(s.proxy.instance.status().primary, null, 'no primary while the promotion cannot finish');
  frozen.thaw();
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'a retry to promote n2', FAILOVER_MS);
  await s.writers.acked(50);
  await s.finish({ faultAt, connectFailuresExpected: true });
});

t.test('the fencing command fails: the old primary stays fenced at the proxy and the failover completes', async (t) => {
  const s = await startScenario(t, 'fencing command fails', { overrides: { fencing: { action: 'command', command: 'echo "no power switch here" >&2; exit 3' } } });
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', FAILOVER_MS);
  await eventually(
    async () => ((await metricValue(s.proxy.adminUrl, 'pgfloat_fencing_actions_total', { node: 'n1', result: 'failed' })) ?? 0) > 0,
    'the failed fencing action to be counted',
    30_000,
  );
  const failure = s.log.lines().find((l) => l.msg.startsWith('fencing action failed'))!;
  t.ok(failure, 'and logged');
  t.match(String(failure.err), /exit code 3.*no power switch here/, `the log says why: ${String(failure.err)}`);
  await s.cluster.primary.start();
  await eventually(() => nodeStatus(s.proxy.instance.status(), 'n1').roguePrimary, 'n1 to be flagged as a rogue primary', 60_000);
  await s.writers.acked(50);
  t.equal(await clientBackendCount(s.cluster.primary), 0, 'n1 gets no client session');
  await s.finish({ faultAt });
});
