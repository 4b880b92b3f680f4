// Reliability: pgfloat itself SIGKILLed in the middle of a failover or a switchover, then restarted over the same state.
import t from 'tap';
import { startCluster } from '../harness/cluster';
import { crashServer, freezePid, processState, promoteRequested, tryQuery } from '../harness/faults';
import { createHistoryTable, startHistoryWriters } from '../harness/history';
import { eventually, stateDirFor } from '../harness/pgfloat';
import { pickPorts, processStatus, startPgfloatProcess, type PgfloatProcess, type ProcessPorts } from '../harness/pgfloat-process';
import { judge } from '../harness/reliability';
import { TEST_TOKEN, postOperation } from '../harness/cli';

async function untilStatus(p: PgfloatProcess, what: string, check: (s: NonNullable<Awaited<ReturnType<typeof processStatus>>>) => boolean, timeoutMs = 60_000): Promise<void> {
  await eventually(async () => {
    const s = await processStatus(p);
    return s !== undefined && check(s);
  }, what, timeoutMs);
}

/** Stops n2's startup process: promotion (and replay) cannot finish until it is thawed. */
async function freezeStartup(t: Parameters<typeof freezePid>[0], standbyUrl: string): Promise<{ thaw(): void }> {
  const rows = await tryQuery<{ pid: number }>(standbyUrl, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'");
  const pid = rows![0]!.pid;
  const frozen = freezePid(t, pid);
  await eventually(() => processState(pid) === 'T', "n2's startup process to stop", 10_000);
  return frozen;
}

/** A cluster behind a `pgfloat start` process, with history writers on its fixed read-write port. */
async function setUp(t: tap.Test, overrides: (ports: ProcessPorts) => Record<string, unknown>) {
  const cluster = await startCluster(t);
  const stateDir = stateDirFor(t);
  const ports = await pickPorts();
  const config = overrides(ports);
  const first = await startPgfloatProcess(t, cluster.nodes, stateDir, ports, config);
  await createHistoryTable(first.readWriteUrl());
  const writers = startHistoryWriters(first.readWriteUrl(), { clients: 4, pauseMs: 5, queryTimeoutMs: 5000, connectTimeoutMs: 5000 });
  t.teardown(() => writers.stop());
  await writers.acked(50);
  /** Starts a second pgfloat over the first one's state and judges the whole history once it routes to n2. */
  const restartAndJudge = async (name: string, killedAt: number, faultAt?: number) => {
    const second = await startPgfloatProcess(t, cluster.nodes, stateDir, ports, config);
    await untilStatus(second, 'the restarted pgfloat to route writes to n2', (s) => s.primary === 'n2');
    const status = (await processStatus(second))!;
    t.equal(status.epoch, 2, 'the restarted pgfloat is at epoch 2');
    t.ok(status.nodes.find((n) => n.name === 'n1')?.fenced, 'n1 stays fenced');
    await writers.acked(50);
    const history = await writers.stop();
    const checked = cluster.nodes.map((n) => ({ name: n.name, port: n.port, connectionString: () => n.connectionString() }));
    const instances = [
      { name: 'first', lines: first.lines(), endedAt: killedAt },
      { name: 'second', lines: second.lines() },
    ];
    return judge(t, name, history, checked, 'n2', instances, { faultAt, maxLagBytes: 1024 * 1024, connectFailuresExpected: true });
  };
  return { cluster, first, restartAndJudge };
}

t.test('killed while the promotion is under way: the restarted pgfloat records it and routes only to n2', async (t) => {
  const { cluster, first, restartAndJudge } = await setUp(t, (ports) => ({
    admin: { listen: `127.0.0.1:${ports.admin}`, token: TEST_TOKEN },
    failover: { promoteTimeoutMs: 30_000 },
  }));
  const startup = await freezeStartup(t, cluster.standby.connectionString());
  const faultAt = Date.now();
  await crashServer(cluster.primary);
  await untilStatus(first, 'the first pgfloat to be promoting, pg_promote() asked of n2', (s) => s.phase === 'failover: promoting' && promoteRequested(cluster.standby));
  const killedAt = Date.now();
  await first.kill('SIGKILL');
  // pg_promote() was asked: with its startup process running again n2 finishes the promotion alone.
  startup.thaw();
  await eventually(async () => (await tryQuery<{ r: boolean }>(cluster.standby.connectionString(), 'SELECT pg_is_in_recovery() AS r'))?.[0]?.r === false, 'n2 to leave recovery');
  await restartAndJudge('pgfloat killed during a promotion, restarted', killedAt, faultAt);
});

t.test('killed in the middle of a switchover: the restarted pgfloat finishes it as a failover, nothing lost', async (t) => {
  const { cluster, first, restartAndJudge } = await setUp(t, (ports) => ({
    admin: { listen: `127.0.0.1:${ports.admin}`, token: TEST_TOKEN },
    switchover: { catchUpTimeoutMs: 60_000 },
  }));
  // With replay stopped the switchover waits in its catch-up step, after the fence and the write stop.
  const startup = await freezeStartup(t, cluster.standby.connectionString());
  const answer = await postOperation(first.adminUrl, '/switchover', {});
  t.equal(answer.status, 202, `switchover accepted: ${JSON.stringify(answer.json)}`);
  // catching-up: the old primary is fenced and takes no more writes; n2 cannot replay its last WAL.
  await untilStatus(first, 'the switchover to wait for the catch-up', (s) => s.phase === 'failover: catching-up');
  const killedAt = Date.now();
  await first.kill('SIGKILL');
  startup.thaw();
  const report = await restartAndJudge('pgfloat killed during a switchover, restarted', killedAt);
  t.equal(report.lost.length, 0, 'the old primary had stopped writes and flushed: n2 has every acknowledged write');
});
