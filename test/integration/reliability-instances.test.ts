// Reliability with three pgfloat instances over etcd: an instance killed, the primary killed, the decider killed during a failover.
import t from 'tap';
import { crashServer, freezePid, processState, promoteRequested, tryQuery } from '../harness/faults';
import { startInstanceScenario } from '../harness/instance-scenario';
import { eventually } from '../harness/pgfloat';

t.test('an instance killed mid-traffic (a follower, then the decider): no failover, writes go on through the others', async (t) => {
  const s = await startInstanceScenario(t, 'three instances: one killed mid-traffic, then the decider');
  const first = await s.group.decider();
  const follower = s.group.instances.find((i) => i !== first)!;
  await follower.kill('SIGKILL');
  await s.writers.acked(60);
  await first.kill('SIGKILL');
  const next = await s.group.decider();
  t.not(next.name, first.name, 'another instance took the election once the lease of the killed decider expired');
  t.not(next.name, follower.name);
  await s.writers.acked(60);
  const status = (await next.status())!;
  t.equal(status.primary, 'n1', 'the primary stays n1');
  t.equal(status.epoch, 1, 'no failover happened');
  await s.finish('n1');
});

t.test('the primary killed: a majority of instances sees it down, one failover, every instance routes to n2', async (t) => {
  const s = await startInstanceScenario(t, 'three instances: primary killed (SIGKILL)');
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await s.group.allRouteTo('n2');
  for (const i of s.group.instances) {
    const status = (await i.status())!;
    t.equal(status.epoch, 2, `${i.name} is at epoch 2`);
    t.ok(status.nodes.find((n) => n.name === 'n1')?.fenced, `${i.name} sees n1 fenced`);
  }
  const failovers = s.group.logs().flatMap((l) => l.lines).filter((l) => l.msg === 'failover: starting');
  t.equal(failovers.length, 1, 'exactly one instance ran the failover');
  await s.finish('n2', { faultAt });
});

t.test('the decider killed during a failover: the next decider finishes it from the persisted fence', async (t) => {
  const s = await startInstanceScenario(t, 'three instances: decider killed during a failover', { overrides: { failover: { promoteTimeoutMs: 30_000 } } });
  const decider = await s.group.decider();
  // With n2's startup process stopped, the promotion cannot finish before the decider is gone.
  const rows = await tryQuery<{ pid: number }>(s.cluster.standby.connectionString(), "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'");
  const startup = freezePid(t, rows![0]!.pid);
  await eventually(() => processState(rows![0]!.pid) === 'T', "n2's startup process to stop", 10_000);
  const faultAt = Date.now();
  await crashServer(s.cluster.primary);
  await eventually(
    async () => (await decider.status())?.phase === 'failover: promoting' && promoteRequested(s.cluster.standby),
    'the decider to be promoting, pg_promote() asked of n2',
    60_000,
  );
  await decider.kill('SIGKILL');
  startup.thaw();
  const next = await s.group.decider();
  t.not(next.name, decider.name, 'a new decider');
  await s.group.allRouteTo('n2');
  const status = (await next.status())!;
  t.equal(status.epoch, 2, 'the promotion is recorded once: epoch 2');
  t.ok(status.nodes.find((n) => n.name === 'n1')?.fenced, 'n1 stays fenced');
  await s.finish('n2', { faultAt, connectFailuresExpected: true });
});
