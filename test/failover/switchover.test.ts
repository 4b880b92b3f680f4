// The failover core's planned switchover, step by step, without servers.
import t, { type Test } from 'tap';
import type { OperatorCommand } from '../../src/failover/types';
import { adoptedCluster, type Sim } from './sim';

function switchover(sim: Sim, extra: Partial<Extract<OperatorCommand, { command: 'switchover' }>> = {}) {
  return sim.send({ type: 'operator', op: { command: 'switchover', force: false, logicalSlots: [], ...extra } });
}

/** Runs a switchover from n1 to n2 up to (not including) the promotion. */
function upToPromotion(t: Test, sim: Sim): void {
  switchover(sim);
  t.same(sim.state.operatorAnswer, { accepted: true, message: 'switching over from n1 to n2' });
  t.same(sim.types(), ['hold-writes', 'drain-sessions n1'], 'holds new writers, drains the primary');
  t.equal(sim.writable(), undefined, 'nothing writable while draining');
  sim.send({ type: 'drained', node: 'n1', atBoundary: 3, cut: 0 });
  t.same(sim.types(), ['persist'], 'then records the fence');
  sim.answerPersist();
  t.same(sim.store.fenced, ['n1']);
  t.same(sim.types(), ['stop-writes n1'], 'stops writes only once the fence is persisted');
  sim.send({ type: 'writes-stopped', node: 'n1', finalLsn: '0/3000500' });
  t.same(sim.types(), ['await-replay n2'], 'waits for the standby to replay the final position');
  const wait = sim.last.find((a) => a.type === 'await-replay');
  t.match(wait, { lsn: '0/3000500' });
}

t.test('switchover: drain, fence, stop writes, catch up, promote, verify, persist, release', async (t) => {
  const sim = adoptedCluster();
  upToPromotion(t, sim);
  sim.send({ type: 'caught-up', node: 'n2', lsn: '0/3000500' });
  t.same(sim.types(), ['promote n2'], 'promotes only after catching up');
  sim.send({ type: 'promoted', node: 'n2' });
  // n1 is read-only now: its reports must not trigger anything.
  sim.primary('n1', '0/3000500', 1);
  t.same(sim.types(), []);
  sim.primary('n2', '0/3000600', 2);
  t.same(sim.types(), ['persist']);
  sim.answerPersist();
  t.same(sim.types(), ['release-writes']);
  t.equal(sim.store.primary, 'n2');
  t.equal(sim.store.epoch, 2);
  t.same(sim.store.fenced, ['n1'], 'the old primary stays fenced until it rejoins');
  t.equal(sim.store.history.at(-1)?.reason, 'switchover');
  t.equal(sim.store.history.at(-1)?.oldPrimaryLsn, '0/3000500', 'history keeps the final position');
  t.equal(sim.writable(), 'n2');
  t.match(sim.state.lastOutcome, { planned: true, ok: true, oldPrimary: 'n1', target: 'n2' });
  sim.primary('n1', '0/3000500', 1);
  t.same(sim.types(), [], 'the demoted old primary, still running read-only, is not treated as a rogue primary');
  t.same(sim.state.roguePrimaries, []);
  sim.down('n1'); // stopped for its rejoin
  sim.primary('n1', '0/3000500', 1);
  t.same(sim.types(), ['drop-sessions n1', 'fence n1'], 'but once it was down, coming back as a primary is rogue');
  // The old primary rejoins as a standby of n2: unfenced, roles switched, cluster whole again.
  sim.standby('n1', '0/3000600', 2, true);
  t.same(sim.types(), ['persist']);
  sim.answerPersist();
  t.same(sim.store.fenced, []);
  t.equal(sim.state.degenerateSince, undefined);
});

t.test('switchover rolls back when the standby does not catch up: old primary resumes, is unfenced', async (t) => {
  const sim = adoptedCluster();
  upToPromotion(t, sim);
  sim.send({ type: 'catch-up-failed', node: 'n2', error: 'replayed up to 0/3000400 of 0/3000500 within 10000 ms' });
  t.same(sim.types(), ['resume-writes n1'], 'gives the old primary its writes back first');
  t.equal(sim.writable(), undefined, 'still nothing writable');
  sim.send({ type: 'writes-resumed', node: 'n1' });
  t.same(sim.types(), ['persist'], 'then lifts the fence');
  sim.answerPersist();
  t.same(sim.types(), ['release-writes']);
  t.same(sim.store.fenced, []);
  t.equal(sim.store.primary, 'n1');
  t.equal(sim.store.epoch, 1, 'no new epoch');
  t.equal(sim.writable(), 'n1');
  t.match(sim.state.lastOutcome, { planned: true, ok: false, message: /rolled back: n2 did not catch up/ });
});

t.test('switchover rolls back when writes cannot be stopped', async (t) => {
  const sim = adoptedCluster();
  switchover(sim);
  sim.send({ type: 'drained', node: 'n1', atBoundary: 0, cut: 1 });
  sim.answerPersist();
  sim.send({ type: 'stop-writes-failed', node: 'n1', error: 'connection refused' });
  t.same(sim.types(), ['resume-writes n1']);
  sim.send({ type: 'writes-resumed', node: 'n1', error: 'still refused' });
  t.same(sim.types(), ['persist'], 'unfenced even so: routing follows its health from here');
  sim.answerPersist();
  t.equal(sim.store.primary, 'n1');
  t.match(sim.logs().join('\n'), /could not be given its writes back/);
});

t.test('switchover refusals name the problem and change nothing', async (t) => {
  const refused = (sim: Sim, extra: Parameters<typeof switchover>[1], pattern: RegExp, what: string): void => {
    const actions = switchover(sim, extra);
    t.equal(sim.state.operatorAnswer?.accepted, false, what);
    t.match(sim.state.operatorAnswer?.message, pattern, what);
    t.same(sim.types(actions), [], `${what}: no actions`);
    t.equal(sim.state.phase.kind, 'steady');
    t.equal(sim.writable(), 'n1');
  };
  const sim = adoptedCluster();
  refused(sim, { to: 'n1' }, /already the primary/, 'to the primary');
  refused(sim, { logicalSlots: ['sub_a', 'sub_b'] }, /logical replication slots on n1 would be lost: sub_a, sub_b.*--force/, 'logical slots');
  sim.primary('n1', '0/9000000');
  sim.standby('n2', '0/3000000');
  refused(sim, {}, /n2 is 100663296 bytes behind n1, over switchover.maxLagBytes/, 'lagging standby');
  sim.standby('n2', '0/9000000', 1, false);
  refused(sim, {}, /no healthy, streaming standby/, 'standby not streaming');
  refused(sim, { to: 'n2' }, /n2 is not streaming from n1/, 'named standby not streaming');
  sim.down('n2');
  refused(sim, { to: 'n2' }, /n2 is down/, 'standby down');

  const forced = adoptedCluster();
  switchover(forced, { logicalSlots: ['sub_a'], force: true });
  t.equal(forced.state.operatorAnswer?.accepted, true, '--force switches despite logical slots');
  t.match(forced.logs().join('\n'), /closing sessions on n1/);

  const busy = adoptedCluster();
  switchover(busy);
  switchover(busy);
  t.match(busy.state.operatorAnswer, { accepted: false, message: /in progress/ }, 'one operation at a time');
});

t.test('switchover then switchover back returns the roles to the start', async (t) => {
  const sim = adoptedCluster();
  const roundTrip = (from: string, to: string, epoch: number, timeline: number): void => {
    switchover(sim);
    t.same(sim.state.operatorAnswer, { accepted: true, message: `switching over from ${from} to ${to}` });
    sim.send({ type: 'drained', node: from, atBoundary: 1, cut: 0 });
    sim.answerPersist();
    sim.send({ type: 'writes-stopped', node: from, finalLsn: `0/${timeline}000000` });
    sim.send({ type: 'caught-up', node: to, lsn: `0/${timeline}000000` });
    sim.send({ type: 'promoted', node: to });
    sim.primary(to, `0/${timeline}000100`, timeline);
    sim.answerPersist();
    t.equal(sim.store.primary, to);
    t.equal(sim.store.epoch, epoch);
    sim.standby(from, `0/${timeline}000100`, timeline, true);
    sim.answerPersist();
    t.same(sim.store.fenced, [], `${from} rejoined and unfenced`);
  };
  roundTrip('n1', 'n2', 2, 2);
  roundTrip('n2', 'n1', 3, 3);
  t.equal(sim.writable(), 'n1');
});

t.test('a pgfloat restarted after the switchover fence was persisted finishes it as a failover', async (t) => {
  const sim = adoptedCluster();
  switchover(sim);
  sim.send({ type: 'drained', node: 'n1', atBoundary: 1, cut: 0 });
  sim.answerPersist();
  // Restart: a new core over the persisted state, n1 fenced and read-only, n2 caught up.
  const { Sim: SimClass } = await import('./sim');
  const restarted = new SimClass(['n1', 'n2'], sim.store);
  restarted.primary('n1', '0/3000000');
  restarted.standby('n2', '0/3000000', 1, true);
  t.equal(restarted.writable(), undefined, 'the fenced old primary gets no writes');
  t.ok(restarted.all.some((a) => a.type === 'fence' && a.node === 'n1'), 'its fencing action is applied again');
  t.ok(restarted.all.some((a) => a.type === 'promote' && a.node === 'n2'), 'the standby is promoted although it still hears n1: n1 was given up on');
  restarted.send({ type: 'promoted', node: 'n2' });
  restarted.primary('n2', '0/3000100', 2);
  restarted.answerPersist();
  t.equal(restarted.store.primary, 'n2');
  t.equal(restarted.writable(), 'n2');
});

t.test('a reporting server (promotable: false) is never promoted, by failover or switchover', async (t) => {
  const { Sim: SimClass, defaultOptions } = await import('./sim');
  const { emptyState } = await import('../../src/cluster/state');
  const sim = new SimClass(['n1', 'n2', 'n3'], emptyState(), { ...defaultOptions, notPromotable: ['n3'] });
  sim.primary('n1');
  sim.standby('n2', '0/3000000');
  sim.standby('n3', '0/3000000');
  sim.answerPersist();
  switchover(sim, { to: 'n3' });
  t.match(sim.state.operatorAnswer, { accepted: false, message: /n3 is a reporting server/ });
  sim.standby('n2', '0/2F00000', 1, false);
  sim.standby('n3', '0/3000000', 1, false);
  sim.down('n1');
  t.ok(sim.last.some((a) => a.type === 'hold-writes'), 'fails over');
  t.match(sim.state.phase, { kind: 'failover', target: 'n2' }, 'to n2, although the reporting server n3 is further ahead');
  const lone = new SimClass(['n1', 'n3'], emptyState(), { ...defaultOptions, notPromotable: ['n3'] });
  lone.primary('n1');
  lone.standby('n3');
  lone.answerPersist();
  lone.standby('n3', '0/3000000', 1, false);
  lone.down('n1');
  t.equal(lone.state.phase.kind, 'steady', 'with only a reporting server left: no failover');
  t.match(lone.state.blocked, /no healthy standby/);
});
