// The failover core with several instances sharing the state: follower, decider, majority, fence acknowledgements, lost lease.
import t from 'tap';
import type { Coordination, PeerView } from '../../src/failover/types';
import { adoptedCluster, defaultOptions, Sim } from './sim';
import type { HealthStatus } from '../../src/cluster/node';

function peer(n1: HealthStatus, appliedRevision: number, n2: HealthStatus = 'up'): PeerView {
  return { view: { n1, n2 }, appliedRevision };
}

function coordinate(sim: Sim, c: Partial<Coordination> & { peers: Record<string, PeerView> }): void {
  sim.send({ type: 'coordination', coordination: { decider: true, deciderName: 'a', connected: true, ...c } });
}

/** n1 primary at epoch 1 and revision 1, n2 a standby that no longer hears it, this instance deciding beside b and c. */
function deciderOfThree(): Sim {
  const sim = adoptedCluster();
  coordinate(sim, { peers: { b: peer('up', 1), c: peer('up', 1) } });
  sim.standby('n2', '0/3000000', 1, false);
  return sim;
}

t.test('the decider does not fail over while only it sees the primary down', async (t) => {
  const sim = deciderOfThree();
  sim.down('n1');
  t.equal(sim.state.phase.kind, 'steady');
  t.match(sim.state.blocked, /only 1 of 3 live pgfloat instances see it down/);
  t.notOk(sim.types().includes('persist'), 'nothing is fenced');
  coordinate(sim, { peers: { b: peer('down', 1), c: peer('up', 1) } });
  t.equal(sim.state.phase.kind, 'failover', 'two of three see it down: a majority');
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1', 'fence n1', 'persist']);
});

t.test('with a dead instance gone from the peers, two live instances both must see the primary down', async (t) => {
  const sim = deciderOfThree();
  coordinate(sim, { peers: { b: peer('up', 1) } });
  sim.down('n1');
  t.match(sim.state.blocked, /only 1 of 2/);
  coordinate(sim, { peers: { b: peer('down', 1) } });
  t.equal(sim.state.phase.kind, 'failover');
});

t.test('the promotion waits until every live instance has applied the fence', async (t) => {
  const sim = deciderOfThree();
  coordinate(sim, { peers: { b: peer('down', 1), c: peer('down', 1) } });
  sim.down('n1');
  sim.answerPersist();
  t.equal(sim.store.revision, 2, 'the fence is revision 2');
  t.same(sim.types(), [], 'no promotion yet');
  t.match(sim.state.phase, { kind: 'failover', step: 'acknowledging' });
  coordinate(sim, { peers: { b: peer('down', 2), c: peer('down', 1) } });
  t.same(sim.types(), [], 'c has not applied it');
  coordinate(sim, { peers: { b: peer('down', 2) } });
  t.same(sim.types(), ['promote n2'], 'c is gone (its lease expired), b has applied it: promote');
});

t.test('an instance that never acknowledges fails the failover at the deadline, and it is retried', async (t) => {
  const sim = deciderOfThree();
  coordinate(sim, { peers: { b: peer('down', 1), c: peer('down', 1) } });
  sim.down('n1');
  sim.answerPersist();
  sim.tick(6000);
  t.equal(sim.state.phase.kind, 'failed');
  t.match(sim.state.lastOutcome?.message, /b, c did not acknowledge the fence of n1/);
  t.equal(sim.writable(), undefined);
  coordinate(sim, { peers: { b: peer('down', 2), c: peer('down', 2) } });
  sim.tick(2000);
  t.ok(sim.all.some((a) => a.type === 'promote'), 'the retry promotes once both applied it');
});

t.test('a follower routes by the shared state and never decides', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { decider: false, deciderName: 'a', peers: { a: peer('up', 1) } });
  t.equal(sim.writable(), 'n1');
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  t.same(sim.types(), ['hold-writes'], 'holds writers for the decider to act; no fence, no persist');
  t.equal(sim.state.phase.kind, 'steady');
  sim.tick(60_000);
  t.notOk(sim.all.some((a) => a.type === 'persist' && sim.all.indexOf(a) > 2), 'never persists');
  t.notOk(sim.all.some((a) => a.type === 'promote'), 'never promotes');

  const fenced = { ...sim.store, revision: 2, fenced: ['n1'] };
  sim.send({ type: 'cluster-changed', cluster: fenced });
  t.same(sim.types(), ['drop-sessions n1'], 'drops its sessions to the node the decider fenced');
  t.equal(sim.state.cluster.revision, 2, 'and has applied revision 2');
  sim.send({ type: 'cluster-changed', cluster: { ...sim.store, revision: 1 } });
  t.equal(sim.state.cluster.revision, 2, 'an older state is ignored');

  sim.send({ type: 'cluster-changed', cluster: { ...fenced, revision: 3, epoch: 2, primary: 'n2', timeline: 2 } });
  t.equal(sim.writable(), undefined, 'not before the new primary is seen out of recovery');
  sim.primary('n2', '0/3000200', 2);
  t.same(sim.types(), ['release-writes']);
  t.equal(sim.writable(), 'n2');
});

t.test('a follower claims a fence as applied only once its relay dropped the sessions', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { decider: false, deciderName: 'a', peers: { a: peer('up', 1) } });
  sim.acknowledgeDrops = false;
  sim.send({ type: 'cluster-changed', cluster: { ...sim.store, revision: 2, fenced: ['n1'] } });
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1']);
  t.equal(sim.state.cluster.revision, 2, 'the new state is taken at once (routing follows it)');
  t.equal(sim.state.appliedRevision, 1, 'but not reported as applied while a worker may still hold a session to n1');
  sim.droppedSessions('n1');
  t.equal(sim.state.appliedRevision, 2, 'applied once every worker answered');
});

t.test('a decider waits for its own relay too before promoting, and gives up at the deadline', async (t) => {
  const sim = adoptedCluster();
  sim.acknowledgeDrops = false;
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1', 'fence n1', 'persist']);
  sim.answerPersist();
  t.same(sim.types(), [], 'fence persisted, no promotion yet');
  t.equal(sim.state.phase.kind === 'failover' && sim.state.phase.step, 'acknowledging');
  t.same(sim.types(sim.droppedSessions('n1')), ['promote n2'], 'the answer lets the promotion go ahead');

  const stuck = adoptedCluster();
  stuck.acknowledgeDrops = false;
  stuck.standby('n2', '0/3000000', 1, false);
  stuck.down('n1');
  stuck.answerPersist();
  stuck.tick(defaultOptions.promoteTimeoutMs + 1);
  t.equal(stuck.state.phase.kind, 'failed', 'no answer in time: the failover fails rather than promote');
  t.match(stuck.state.lastOutcome?.message, /relay did not confirm/);
  t.notOk(stuck.all.some((a) => a.type === 'promote'), 'never promoted');
});

t.test('a follower refuses operator commands and names the decider', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { decider: false, deciderName: 'a', peers: {} });
  sim.send({ type: 'operator', op: { command: 'fence', node: 'n2' } });
  t.match(sim.state.operatorAnswer, { accepted: false, message: /send it to the decider, a/ });
  t.same(sim.types(), []);
});

t.test('losing the lease drops the sessions to the primary and refuses writes until it is renewed', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { decider: false, peers: {} });
  sim.send({ type: 'coordination', coordination: { decider: false, connected: false, disconnectedReason: 'etcd unreachable for 3 s', peers: {} } });
  t.same(sim.types(), ['drop-sessions n1']);
  t.equal(sim.writable(), undefined);
  t.equal(sim.state.heldBecause, undefined, 'refused at once rather than held');
  coordinate(sim, { decider: false, peers: {} });
  t.equal(sim.writable(), 'n1');
});

t.test('a decider that loses the election mid-failover leaves it; the next decider finishes it from the persisted fence', async (t) => {
  const sim = deciderOfThree();
  coordinate(sim, { peers: { b: peer('down', 1), c: peer('down', 1) } });
  sim.down('n1');
  sim.answerPersist();
  coordinate(sim, { decider: false, deciderName: 'b', peers: { b: peer('down', 2), c: peer('down', 2) } });
  t.equal(sim.state.phase.kind, 'steady');
  t.match(sim.logs().join('\n'), /leaving the failover in progress to the new decider/);
  t.notOk(sim.all.some((a) => a.type === 'promote'));

  // The next decider starts from the store as it is.
  const next = new Sim(['n1', 'n2'], sim.store);
  coordinate(next, { peers: { a: peer('down', 2), c: peer('down', 2) } });
  next.down('n1');
  next.standby('n2', '0/3000000', 1, true);
  t.ok(next.all.some((a) => a.type === 'promote' && a.node === 'n2'), 'the fence was persisted: promote even though n2 still hears n1');
});

t.test('a follower cut off from a primary the others still see refuses writers after the window, so they move to another instance', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { decider: false, deciderName: 'a', peers: { a: peer('up', 1), c: peer('up', 1) } });
  sim.down('n1');
  t.same(sim.types(), ['hold-writes'], 'held at first: the others may not have noticed yet');
  sim.tick(3000);
  t.same(sim.types(), ['release-writes'], 'past the window, with the others still seeing n1: refused');
  t.match(sim.state.blocked, /unreachable from this pgfloat instance, but the other instances still reach it/);
  t.equal(sim.writable(), undefined);
  coordinate(sim, { decider: false, deciderName: 'a', peers: { a: peer('down', 1), c: peer('up', 1) } });
  t.same(sim.types(), ['hold-writes'], 'once a majority sees it down, a failover is coming: held again');
});

t.test('a switchover with several instances: the decider announces it, and drains once the announcement is in the shared state', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { peers: { b: peer('up', 1) } });
  sim.send({ type: 'operator', op: { command: 'switchover', force: false, logicalSlots: [] } });
  t.same(sim.types(), ['hold-writes', 'persist'], 'holds writers and writes the announcement first');
  t.match(sim.state.phase, { kind: 'failover', step: 'announcing' });
  sim.answerPersist();
  t.match(sim.store.switchover, { from: 'n1', to: 'n2' });
  t.same(sim.types(), ['drain-sessions n1'], 'then drains its own sessions');
  sim.send({ type: 'drained', node: 'n1', atBoundary: 1, cut: 0 });
  t.same(sim.types(), [], 'its own drain is done, but b has not applied the announcement (drained) yet');
  coordinate(sim, { peers: { b: peer('up', 2) } });
  t.same(sim.types(), ['persist'], 'b drained: the fence follows');
  sim.answerPersist();
  t.same(sim.store.fenced, ['n1']);
  t.equal(sim.store.switchover, undefined, 'and the announcement is withdrawn with it');
});

t.test('the decider fences without a follower that has not drained by the deadline; the promotion still waits for its fence', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { peers: { b: peer('up', 1) } });
  sim.send({ type: 'operator', op: { command: 'switchover', force: false, logicalSlots: [] } });
  sim.answerPersist();
  sim.send({ type: 'drained', node: 'n1', atBoundary: 0, cut: 0 });
  sim.tick(2500);
  t.same(sim.types(), [], 'within the drain time (1 s here) and its grace: waits');
  sim.tick(600);
  t.same(sim.types(), ['persist'], 'past them: fences');
  t.match(sim.logs().join('\n'), /instances b had not finished draining/);
});

t.test('an announcement that cannot be written abandons the switchover: nothing changed anywhere', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { peers: { b: peer('up', 1) } });
  sim.send({ type: 'operator', op: { command: 'switchover', force: false, logicalSlots: [] } });
  sim.answerPersist(false);
  t.equal(sim.state.phase.kind, 'steady');
  t.match(sim.state.lastOutcome?.message, /switchover abandoned: the announcement could not be persisted/);
  t.equal(sim.writable(), 'n1', 'writes go back to n1');
});

t.test('a follower holds writers and drains its sessions on the old primary when a switchover is announced', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { decider: false, deciderName: 'a', peers: { a: peer('up', 1) } });
  t.equal(sim.writable(), 'n1');
  const drainUntil = new Date(sim.now + 5000).toISOString();
  const announced = { ...sim.store, revision: 2, switchover: { from: 'n1', to: 'n2', drainUntil } };
  sim.send({ type: 'cluster-changed', cluster: announced });
  t.same(sim.types(), ['hold-writes', 'drain-sessions n1'], 'holds new writers and drains at transaction boundaries');
  t.match(sim.last.find((a) => a.type === 'drain-sessions'), { drainMs: 5000 });
  t.equal(sim.writable(), undefined);
  t.equal(sim.state.appliedRevision, 1, 'the announcement is not applied until the drain answers');
  sim.send({ type: 'drained', node: 'n1', atBoundary: 2, cut: 0 });
  t.same(sim.types(), [], 'its drain answer decides nothing');
  t.equal(sim.state.appliedRevision, 2, 'now it is: the decider can fence');
  const fenced = { ...announced, revision: 3, fenced: ['n1'], switchover: undefined };
  sim.send({ type: 'cluster-changed', cluster: fenced });
  t.same(sim.types(), ['drop-sessions n1'], 'the fence drops whatever is left');
  t.equal(sim.writable(), undefined, 'still held');
  sim.send({ type: 'cluster-changed', cluster: { ...fenced, revision: 4, primary: 'n2', epoch: 2 } });
  sim.primary('n2', '0/3000600', 2);
  t.equal(sim.writable(), 'n2', 'released to the new primary once seen out of recovery');
});

t.test('a follower stops holding for an announcement whose drain deadline passed without a fence; a new decider withdraws it', async (t) => {
  const sim = adoptedCluster();
  coordinate(sim, { decider: false, deciderName: 'a', peers: { a: peer('up', 1) } });
  const stale = { ...sim.store, revision: 2, switchover: { from: 'n1', to: 'n2', drainUntil: new Date(sim.now + 1000).toISOString() } };
  sim.send({ type: 'cluster-changed', cluster: stale });
  t.equal(sim.writable(), undefined);
  sim.tick(1500);
  t.equal(sim.writable(), 'n1', 'past the deadline, writes go to n1 again');
  coordinate(sim, { decider: true, deciderName: 'b', peers: { a: peer('up', 2) } });
  sim.tick(100);
  t.ok(sim.all.some((a) => a.type === 'persist' && a.cluster.switchover === undefined && a.expectedRevision === 2), 'the new decider withdraws it');
  t.match(sim.logs().join('\n'), /switchover announced by an earlier decider did not finish/);
});
