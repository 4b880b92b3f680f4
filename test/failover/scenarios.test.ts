// The failover core, scenario by scenario, without servers.
import t from 'tap';
import { adoptedCluster, defaultOptions, Sim } from './sim';

t.test('first start adopts the only primary once every node has been seen', async (t) => {
  const sim = new Sim(['n1', 'n2']);
  sim.primary('n1');
  t.same(sim.types(), [], 'waits while n2 is unknown: it might be a primary too');
  sim.standby('n2');
  t.same(sim.types(), ['persist'], 'records n1');
  sim.answerPersist();
  t.equal(sim.store.epoch, 1);
  t.equal(sim.store.primary, 'n1');
  t.equal(sim.store.systemIdentifier, 'sys');
  t.equal(sim.writable(), 'n1');
});

t.test('first start with two primaries routes no writes until an operator adopts one', async (t) => {
  const sim = new Sim(['n1', 'n2']);
  sim.primary('n1');
  sim.primary('n2');
  t.equal(sim.state.phase.kind, 'split-brain');
  t.equal(sim.writable(), undefined);
  t.match(sim.logs().join('\n'), /split brain/);
  sim.send({ type: 'operator', op: { command: 'adopt', node: 'n2' } });
  t.same(sim.types(), ['drop-sessions n1', 'fence n1', 'persist']);
  sim.answerPersist();
  t.equal(sim.store.primary, 'n2');
  t.same(sim.store.fenced, ['n1']);
  sim.primary('n2');
  t.equal(sim.writable(), 'n2');
});

t.test('primary down: fence, promote, verify, persist, release, in that order', async (t) => {
  const sim = adoptedCluster();
  sim.primary('n1', '0/3000100');
  sim.standby('n2', '0/3000100', 1, true);
  sim.down('n1');
  t.equal(sim.state.phase.kind, 'steady', 'the standby still hears the primary: no promotion');
  t.match(sim.state.blocked, /still receives WAL/);
  sim.standby('n2', '0/3000100', 1, false);
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1', 'fence n1', 'persist'], 'holds writes, cuts n1, fences it');
  t.equal(sim.writable(), undefined, 'nothing writable during the failover');
  sim.answerPersist();
  t.same(sim.store.fenced, ['n1'], 'the fence is persisted before promotion');
  t.same(sim.types(), ['promote n2']);
  sim.send({ type: 'promoted', node: 'n2' });
  sim.standby('n2', '0/3000100', 1, false);
  t.same(sim.types(), [], 'still in recovery: not yet verified');
  sim.primary('n2', '0/3000200', 2);
  t.same(sim.types(), ['persist'], 'verified on timeline 2: record epoch 2');
  t.equal(sim.writable(), undefined, 'not routable before the new epoch is persisted');
  sim.answerPersist();
  t.same(sim.types(), ['release-writes']);
  t.equal(sim.store.epoch, 2);
  t.equal(sim.store.primary, 'n2');
  t.equal(sim.store.timeline, 2);
  t.equal(sim.store.history.at(-1)?.oldPrimary, 'n1');
  t.equal(sim.writable(), 'n2');
  t.ok(sim.state.degenerateSince !== undefined, 'degenerate: one server left');
});

t.test('the standby failing causes no failover', async (t) => {
  const sim = adoptedCluster();
  sim.down('n2');
  t.same(sim.types(), []);
  t.equal(sim.writable(), 'n1');
});

t.test('a suspect primary holds new writers; its answer releases them', async (t) => {
  const sim = adoptedCluster();
  sim.report({ node: 'n1', status: 'suspect', inRecovery: false });
  t.same(sim.types(), ['hold-writes']);
  t.equal(sim.writable(), undefined);
  sim.primary('n1');
  t.same(sim.types(), ['release-writes']);
  t.equal(sim.writable(), 'n1');
});

t.test('lag above the limit refuses promotion until the operator allows data loss', async (t) => {
  const sim = adoptedCluster();
  sim.primary('n1', '0/5000000');
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  t.equal(sim.state.phase.kind, 'steady');
  t.match(sim.state.blocked, /33554432 bytes behind.*failover\.maxLagBytes/);
  sim.send({ type: 'operator', op: { command: 'failover', allowDataLoss: true } });
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1', 'fence n1', 'persist']);
});

t.test('an unknown primary position blocks promotion rather than risk unbounded loss', async (t) => {
  const sim = new Sim(['n1', 'n2'], { revision: 3, epoch: 1, primary: 'n1', systemIdentifier: 'sys', timeline: 1, fenced: [], history: [] });
  sim.down('n1');
  sim.standby('n2', '0/3000000', 1, false);
  t.match(sim.state.blocked, /last WAL position is unknown/);
});

t.test('a failed promotion refuses writes, then retries', async (t) => {
  const sim = adoptedCluster();
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  sim.answerPersist();
  sim.send({ type: 'promotion-failed', node: 'n2', error: 'pg_promote timed out' });
  t.equal(sim.state.phase.kind, 'failed');
  t.same(sim.types(), ['release-writes'], 'held writers are let go to be refused');
  t.equal(sim.writable(), undefined);
  sim.tick(defaultOptions.retryIntervalMs - 1);
  t.same(sim.types(), []);
  sim.tick(1);
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1', 'fence n1', 'promote n2'], 'n1 is already fenced: straight to promotion');
});

t.test('a promotion that never shows up times out', async (t) => {
  const sim = adoptedCluster();
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  sim.answerPersist();
  sim.send({ type: 'promoted', node: 'n2' });
  sim.tick(defaultOptions.promoteTimeoutMs + 1);
  t.equal(sim.state.phase.kind, 'failed');
  t.match(sim.logs().join('\n'), /failover failed/);
});

t.test('a promotion that happened after its timeout is recorded, not fenced', async (t) => {
  const sim = adoptedCluster();
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  sim.answerPersist();
  sim.send({ type: 'promotion-failed', node: 'n2', error: 'timeout' });
  sim.primary('n2', '0/3000100', 2);
  t.same(sim.types(), [], 'waits for the retry');
  sim.tick(defaultOptions.retryIntervalMs);
  t.same(sim.types(), ['persist']);
  sim.answerPersist();
  t.equal(sim.store.primary, 'n2');
  t.equal(sim.writable(), 'n2');
});

t.test('the old primary restarting as primary is a fenced rogue: no traffic, fenced again', async (t) => {
  const sim = adoptedCluster();
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  sim.answerPersist();
  sim.send({ type: 'promoted', node: 'n2' });
  sim.primary('n2', '0/3000100', 2);
  sim.answerPersist();
  sim.primary('n1', '0/3000000', 1);
  t.same(sim.types(), ['drop-sessions n1', 'fence n1']);
  t.same(sim.state.roguePrimaries, ['n1']);
  t.equal(sim.writable(), 'n2');
  sim.primary('n1', '0/3000000', 1);
  t.same(sim.types(), [], 'applied once per appearance, not every heartbeat');
  sim.standby('n1', '0/3000100', 2, true);
  t.same(sim.types(), ['persist'], 'rejoined on timeline 2: unfence');
  sim.answerPersist();
  t.same(sim.store.fenced, []);
  t.same(sim.state.roguePrimaries, []);
  t.equal(sim.state.degenerateSince, undefined, 'whole again');
});

t.test('a second unfenced primary next to the recorded one is fenced', async (t) => {
  const sim = adoptedCluster();
  sim.primary('n2', '0/3000000', 2);
  t.same(sim.types(), ['drop-sessions n2', 'fence n2', 'persist']);
  t.equal(sim.writable(), undefined, 'two claimants: neither is writable until the fence of n2 is recorded');
  sim.answerPersist();
  t.equal(sim.writable(), 'n1', 'then writes stay on the recorded primary');
});

t.test('pgfloat restarted after a failover keeps the new primary and the fence', async (t) => {
  const sim = new Sim(['n1', 'n2'], { revision: 4, epoch: 2, primary: 'n2', systemIdentifier: 'sys', timeline: 2, fenced: ['n1'], history: [] });
  sim.primary('n2', '0/3000100', 2);
  sim.primary('n1', '0/3000000', 1);
  t.equal(sim.writable(), 'n2');
  t.same(sim.state.roguePrimaries, ['n1']);
});

t.test('double failure: the new primary dies before the old one rejoined', async (t) => {
  const sim = new Sim(['n1', 'n2'], { revision: 4, epoch: 2, primary: 'n2', systemIdentifier: 'sys', timeline: 2, fenced: ['n1'], history: [] });
  sim.primary('n2', '0/3000100', 2);
  sim.standby('n1', '0/3000000', 1, false);
  sim.down('n2');
  t.equal(sim.state.phase.kind, 'steady', 'the fenced stale node is never a candidate');
  t.match(sim.state.blocked, /no healthy standby/);
  t.equal(sim.writable(), undefined);
});

t.test('a different system identifier is never promoted', async (t) => {
  const sim = adoptedCluster();
  sim.report({ node: 'n2', inRecovery: true, receiveLsn: '0/3000000', timeline: 1, seesPrimary: false, systemIdentifier: 'other' });
  sim.down('n1');
  t.match(sim.state.blocked, /no healthy standby/);
});

t.test('operator commands during a failover are refused', async (t) => {
  const sim = adoptedCluster();
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  sim.send({ type: 'operator', op: { command: 'unfence', node: 'n1' } });
  t.same(sim.types(), []);
  t.match(sim.logs(sim.last).join(), /refused/);
});

t.test('a node the operator fenced stays fenced while it streams, until the operator unfences it', async (t) => {
  const sim = adoptedCluster();
  sim.send({ type: 'operator', op: { command: 'fence', node: 'n2' } });
  t.same(sim.types(), ['drop-sessions n2', 'fence n2', 'persist']);
  t.equal(sim.state.operatorAnswer?.accepted, true);
  sim.answerPersist();
  sim.standby('n2', '0/3000000', 1, true);
  t.same(sim.types(), [], 'no automatic unfence');
  t.same(sim.store.fenced, ['n2']);
  sim.send({ type: 'operator', op: { command: 'unfence', node: 'n2' } });
  t.same(sim.types(), ['persist']);
  sim.answerPersist();
  t.same(sim.store.fenced, []);
  t.same(sim.store.operatorFenced, []);
});

t.test('pgfloat restarted between fencing and promotion finishes the failover', async (t) => {
  const first = adoptedCluster();
  first.primary('n1', '0/3000100');
  first.standby('n2', '0/3000100', 1, false);
  first.down('n1');
  first.answerPersist(); // the fence is on disk; then pgfloat dies before promoting
  t.equal(first.store.lastKnownPrimaryLsn, '0/3000100', 'the position is persisted with the fence');
  const restarted = new Sim(['n1', 'n2'], first.store);
  restarted.down('n1');
  restarted.standby('n2', '0/3000100', 1, false);
  t.ok(restarted.types().includes('promote n2'), 'the loss bound is known: it promotes');
});

t.test('a rogue primary is fenced again every retry interval while it stays one', async (t) => {
  const sim = new Sim(['n1', 'n2'], { revision: 4, epoch: 2, primary: 'n2', systemIdentifier: 'sys', timeline: 2, fenced: ['n1'], history: [] });
  sim.primary('n2', '0/3000100', 2);
  sim.primary('n1', '0/3000000', 1);
  t.same(sim.types(), ['drop-sessions n1', 'fence n1']);
  t.same(sim.types(sim.tick(defaultOptions.retryIntervalMs - 1)), [], 'not before the interval');
  t.same(sim.types(sim.tick(1)), ['drop-sessions n1', 'fence n1'], 'again after it');
  sim.standby('n1', '0/3000000', 1, false);
  t.same(sim.types(sim.tick(defaultOptions.retryIntervalMs)), [], 'not once it left the primary role');
});

t.test('blocked by the witness, held writers wait out standbyConfirmationMs for the failover that is probably coming', async (t) => {
  const sim = adoptedCluster();
  sim.report({ node: 'n1', status: 'suspect', inRecovery: false });
  t.same(sim.types(), ['hold-writes']);
  sim.standby('n2', '0/3000000', 1, true);
  sim.down('n1');
  t.match(sim.state.blocked, /still receives WAL/);
  t.same(sim.types(), [], 'a standby hears a primary that just died for a while: writers stay held');
  t.equal(sim.state.heldBecause !== undefined, true);
  sim.tick(defaultOptions.standbyConfirmationMs - 100);
  t.same(sim.types(), [], 'still within the window');
  sim.standby('n2', '0/3000000', 1, false);
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1', 'fence n1', 'persist'], 'the standby stopped hearing it: the held writers get the failover');
  t.equal(sim.state.heldBecause !== undefined, true);
});

t.test('blocked by the witness past standbyConfirmationMs, held writers go to their refusal', async (t) => {
  const sim = adoptedCluster();
  sim.report({ node: 'n1', status: 'suspect', inRecovery: false });
  sim.standby('n2', '0/3000000', 1, true);
  sim.down('n1');
  t.same(sim.types(), []);
  sim.tick(defaultOptions.standbyConfirmationMs);
  t.same(sim.types(), ['release-writes'], 'pgfloat is cut off from a primary that lives: nothing is coming');
  t.equal(sim.state.heldBecause, undefined);
  t.match(sim.state.blocked, /still receives WAL/);
});

t.test('blocked by lag, held writers go to their refusal at once', async (t) => {
  const sim = adoptedCluster();
  sim.primary('n1', '0/9000000');
  sim.report({ node: 'n1', status: 'suspect', inRecovery: false });
  t.same(sim.types(), ['hold-writes']);
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  t.match(sim.state.blocked, /maxLagBytes/);
  t.same(sim.types(), ['release-writes']);
  t.equal(sim.state.heldBecause, undefined);
});

t.test('adoption records the adopted primary\'s position, so an early death is still bounded', async (t) => {
  const sim = new Sim(['n1', 'n2']);
  sim.primary('n1', '0/3000100');
  sim.standby('n2', '0/3000100', 1, false);
  sim.answerPersist();
  t.equal(sim.store.lastKnownPrimaryLsn, '0/3000100');
  sim.down('n1');
  t.ok(sim.types().includes('persist'), 'the failover starts without waiting for another heartbeat');
});

t.test('a fence write that loses a compare-and-set race is written again', async (t) => {
  const sim = adoptedCluster();
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  t.same(sim.types(), ['hold-writes', 'drop-sessions n1', 'fence n1', 'persist']);
  // Another writer got there first: the runner reloads the store and reports what it holds.
  sim.store = { ...sim.store, revision: sim.store.revision + 1 };
  sim.send({ type: 'persisted', cluster: sim.store });
  t.same(sim.types(), ['persist'], 'the fence is written again on the fresh revision');
  t.equal(sim.writable(), undefined, 'and nothing is writable meanwhile');
  sim.answerPersist();
  t.same(sim.types(), ['promote n2']);
});
