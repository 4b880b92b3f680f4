// The failover runner with fake effects and a hand-moved clock: what it does, in which order, and what it publishes.

import t from 'tap';
import type { ClusterState } from '../../src/cluster/state';
import type { CoreState, FailoverOptions, NodeReport } from '../../src/failover/types';
import { writeGate } from '../../src/failover/write-gate';
import { silentLogger, type Logger } from '../../src/log';
import { NodeUnreachableError } from '../../src/postgres/admin-session';
import { Router } from '../../src/routing/router';
import { computeRoutes } from '../../src/routing/routes';
import { FailoverRunner } from '../../src/runtime/failover-runner';
import { defaultOptions } from '../failover/sim';
import { adoptedState, capturingLogger, FakeClock, FakeServers, FakeSessions, FakeStore, settle, type Journal } from './fakes';

interface Rig {
  runner: FailoverRunner;
  router: Router;
  journal: Journal;
  clock: FakeClock;
  store: FakeStore;
  sessions: FakeSessions;
  servers: FakeServers;
  /** Every core state the runner published routes for, in order. */
  published: CoreState[];
  progress: string[];
}

function rig(cluster: ClusterState = adoptedState(), options: FailoverOptions = defaultOptions, log: Logger = silentLogger): Rig {
  const journal: Journal = [];
  const clock = new FakeClock();
  const store = new FakeStore(cluster, journal);
  const sessions = new FakeSessions(journal);
  const servers = new FakeServers(journal);
  const router = new Router({ fallbackToPrimary: true, holdMs: 60_000 }, silentLogger);
  const published: CoreState[] = [];
  const progress: string[] = [];
  const runner = new FailoverRunner(
    {
      options,
      names: ['n1', 'n2'],
      clock,
      store,
      sessions,
      servers,
      log,
      route: (core) => {
        published.push(core);
        const routes = computeRoutes(core, { automatic: options.automatic, maxLagBytes: null });
        router.publish(routes);
        journal.push(`route ${routes.primary ?? (routes.heldBecause !== undefined ? 'held' : 'refused')}`);
      },
      stepped: () => undefined,
      fenced: (node, result) => journal.push(`fencing of ${node} ${result}`),
      progress: (_level, message) => progress.push(message),
    },
    cluster,
  );
  runner.start();
  return { runner, router, journal, clock, store, sessions, servers, published, progress };
}

const primary = (node: string, lsn = '0/3000000', timeline = 1): NodeReport => ({ node, status: 'up', inRecovery: false, systemIdentifier: 'sys', currentLsn: lsn, timeline });
const standby = (node: string, seesPrimary = true, timeline = 1): NodeReport => ({
  node,
  status: 'up',
  inRecovery: true,
  systemIdentifier: 'sys',
  receiveLsn: '0/3000000',
  replayLsn: '0/3000000',
  timeline,
  seesPrimary,
});
const down = (node: string): NodeReport => ({ node, status: 'down' });

/**
 * The journal from the first line matching `from` on, without the repeated route lines of
 * heartbeats and without the fencing results, which arrive whenever the fencing answers.
 */
function after(journal: Journal, from: string): string[] {
  const start = journal.findIndex((line) => line.startsWith(from));
  return journal
    .slice(start)
    .filter((line) => !line.startsWith('fencing of'))
    .filter((line, i, all) => !(line.startsWith('route') && all[i - 1] === line));
}

t.test('a failover: the gate closes before the old primary is touched, then fence, persist, promote, verify, persist, release', async (t) => {
  const r = rig();
  r.runner.report(primary('n1'));
  r.runner.report(standby('n2'));
  t.equal(r.router.current().primary, 'n1', 'routes to the recorded primary');
  r.runner.report(standby('n2', false));
  r.runner.report(down('n1'));
  await settle();
  t.same(after(r.journal, 'route held'), [
    'route held',
    'drop n1 (fenced)',
    'fence n1',
    'persist revision 2 primary=n1 fenced=n1',
    'route held',
    'promote n2',
    "after promotion n2 names=''",
    'route held',
    'expedite n2',
  ]);
  t.equal(r.router.heldClients, 0);
  const held = r.router.decide('readWrite');
  r.runner.report(primary('n2', '0/3000100', 2));
  await settle();
  t.same(after(r.journal, 'expedite n2').slice(1), ['route held', 'persist revision 3 primary=n2 fenced=n1', 'route n2']);
  t.same(await held, { ok: true, node: 'n2' }, 'the held client goes to the new primary');
  t.equal(r.store.cluster.epoch, 2);
  // One authority: every decision the router got is the core's write gate at that step.
  for (const core of r.published) t.equal(computeRoutes(core, { automatic: true, maxLagBytes: null }).primary, writeGate(core, { automatic: true }).node);
  t.ok(r.published.some((core) => core.heldBecause !== undefined), 'holds reached the router only through published decisions');
});

t.test('a fence write that loses to another writer: the store is read again and the core decides anew', async (t) => {
  const r = rig();
  r.runner.report(primary('n1'));
  r.runner.report(standby('n2', false));
  r.store.nextWrite = 'conflict';
  r.runner.report(down('n1'));
  await settle();
  t.ok(r.journal.includes('persist lost at revision 1'), 'the first write lost');
  t.ok(r.journal.includes('persist revision 3 primary=n1 fenced=n1'), 'the fence was written again on the fresh revision');
  t.ok(r.journal.indexOf('promote n2') > r.journal.indexOf('persist revision 3 primary=n1 fenced=n1'), 'promotion only after the fence is recorded');
});

t.test('a store that fails while fencing: no promotion, the failover fails and writes are refused', async (t) => {
  const r = rig();
  r.runner.report(primary('n1'));
  r.runner.report(standby('n2', false));
  r.store.nextWrite = 'error';
  r.runner.report(down('n1'));
  await settle();
  t.notOk(r.journal.some((line) => line.startsWith('promote')), 'never promoted');
  t.equal(r.runner.state.phase.kind, 'failed');
  const decision = r.router.decideNow('readWrite');
  t.same(decision.ok ? undefined : decision.refusal.reason, 'failover-failed');
});

t.test('fencing a node that cannot be reached is a warning; a fencing that fails is an error; neither stops the failover', async (t) => {
  for (const [error, level, result] of [
    [new NodeUnreachableError({ name: 'n1', host: '127.0.0.1', port: 1 }, new Error('connection refused')), 40, 'unreachable'],
    [new Error('fencing command failed (exit code 3)'), 50, 'failed'],
  ] as const) {
    const { log, lines } = capturingLogger();
    const r = rig(adoptedState(), defaultOptions, log);
    r.servers.fenceOutcome = error;
    r.runner.report(primary('n1'));
    r.runner.report(standby('n2', false));
    r.runner.report(down('n1'));
    await settle();
    const line = lines.find((l) => /fencing action (could not reach|failed)/.test(l.msg));
    t.equal(line?.level, level, `${error.name}: ${line?.msg}`);
    t.ok(r.journal.includes(`fencing of n1 ${result}`), `counted as ${result}`);
    t.ok(r.journal.includes('promote n2'), 'promoted all the same: the node stays fenced at the proxy');
  }
});

t.test('the lifted synchronous_standby_names travels with the promotion and is recorded with the new primary', async (t) => {
  const r = rig();
  r.servers.promoteOutcome = 'n1';
  r.servers.lifted = { node: 'n2', names: 'n1', sourceFile: null, since: '2026-12-03T00:00:00.000Z' };
  r.runner.report(primary('n1'));
  r.runner.report(standby('n2', false));
  r.runner.report(down('n1'));
  await settle();
  r.runner.report(primary('n2', '0/3000100', 2));
  await settle();
  t.same(r.store.cluster.synchronousLifted, r.servers.lifted, 'in the cluster state, for whichever instance decides next');
  r.runner.onSynchronousRestored('n2');
  await settle();
  t.equal(r.store.cluster.synchronousLifted, undefined, 'gone once the setting is back');
});

t.test('ticks of the injected clock carry the deadlines: a promotion that never answers times out, and is retried', async (t) => {
  const r = rig();
  r.servers.promoteOutcome = undefined;
  r.runner.report(primary('n1'));
  r.runner.report(standby('n2', false));
  r.runner.report(down('n1'));
  await settle();
  t.equal(r.runner.state.phase.kind, 'failover');
  r.clock.advance(defaultOptions.promoteTimeoutMs + 1);
  t.equal(r.runner.state.phase.kind, 'failed', 'past failover.promoteTimeoutMs');
  t.equal(r.runner.state.lastOutcome?.ok, false);
  r.clock.advance(defaultOptions.retryIntervalMs);
  await settle(); // the relay's answer to the drop comes back as its own step
  t.equal(r.journal.filter((line) => line === 'promote n2').length, 2, 'promoted again after failover.retryIntervalMs');
});

t.test('a promotion waits until the relay (every worker) confirms the old primary\'s sessions are gone', async (t) => {
  const r = rig();
  const confirm = r.sessions.holdDrops();
  r.runner.report(primary('n1'));
  r.runner.report(standby('n2', false));
  r.runner.report(down('n1'));
  await settle();
  t.ok(r.journal.includes('drop n1 (fenced)'), 'the drop was asked for');
  t.match(r.store.cluster.fenced, ['n1'], 'and the fence persisted');
  t.equal(r.runner.state.phase.kind === 'failover' && r.runner.state.phase.step, 'acknowledging', 'but the promotion waits');
  t.notOk(r.journal.includes('promote n2'), 'nothing promoted before the answer');
  t.equal(r.runner.state.appliedRevision < r.runner.state.cluster.revision, true, 'nor is the fence claimed as applied');
  confirm();
  await settle();
  t.ok(r.journal.includes('promote n2'), 'promoted once the relay answered');
  t.equal(r.runner.state.appliedRevision, r.runner.state.cluster.revision, 'and the revision counts as applied');
});

t.test('a switchover: drain, fence, stop writes, catch up, promote; a failed drain cuts the sessions and goes on', async (t) => {
  const r = rig();
  r.sessions.drainOutcome = new Error('registry gone');
  r.runner.report(primary('n1'));
  r.runner.report(standby('n2'));
  const answer = r.runner.operator({ command: 'switchover', force: false, logicalSlots: [] }).operatorAnswer;
  t.equal(answer?.accepted, true, answer?.message ?? 'no answer');
  await settle();
  t.same(after(r.journal, 'route held').slice(0, 8), [
    'route held',
    'drain n1 (switchover)',
    'drop n1 (switchover)',
    'route held',
    'persist revision 2 primary=n1 fenced=n1',
    'route held',
    'stop writes n1 for n2',
    'route held',
  ]);
  t.ok(r.journal.includes('await replay n2 0/3000200') && r.journal.includes('promote n2'), 'caught up, then promoted');
  t.ok(r.progress.some((m) => m === 'switchover: n1 read-only'), "the write stop's progress reaches the operation");
});

t.test('waitFor resolves once the core gets there, and rejects when the runner stops', async (t) => {
  const r = rig();
  const adopted = r.runner.waitFor((core) => core.nodes.n1?.status === 'up', 10_000, 'n1 to answer');
  r.runner.report(primary('n1'));
  t.equal((await adopted).nodes.n1?.status, 'up');
  const never = r.runner.waitFor(() => false, 10_000, 'something that never happens');
  r.runner.stop();
  await t.rejects(never, /stopped while waiting for something that never happens/);
});
