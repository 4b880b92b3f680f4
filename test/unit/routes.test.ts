// computeRoutes and Router: who read-write and read-only clients may reach, and why not. Read-write
// routing has one authority, the failover core's write gate; routing adds the standbys and rules.

import t from 'tap';
import type { HealthStatus } from '../../src/cluster/node';
import { emptyState, type ClusterState } from '../../src/cluster/state';
import { initialState } from '../../src/failover/core';
import { writeGate } from '../../src/failover/write-gate';
import type { CoreState, NodeReport } from '../../src/failover/types';
import { silentLogger } from '../../src/log';
import { computeRoutes, type RouteOptions, type Routes } from '../../src/routing/routes';
import { Router, type RouteDecision } from '../../src/routing/router';
import { adoptedCluster } from '../failover/sim';

const SYSID = '7311111111111111111';
const OTHER_SYSID = '7322222222222222222';

function node(name: string, role: 'primary' | 'standby', status: HealthStatus = 'up', extra: Partial<NodeReport> = {}): NodeReport {
  return {
    node: name,
    status,
    inRecovery: role === 'standby',
    systemIdentifier: SYSID,
    timeline: 1,
    ...(role === 'primary' ? { currentLsn: '0/3000000' } : { receiveLsn: '0/3000000', replayLsn: '0/3000000' }),
    ...extra,
  };
}

function state(extra: Partial<ClusterState> = {}): ClusterState {
  return { ...emptyState(), ...extra };
}

/** The failover core's view after these reports, as the runner would hold it. */
function core(reports: NodeReport[], cluster: ClusterState = state()): CoreState {
  const s = initialState(
    reports.map((r) => r.node),
    cluster,
    0,
  );
  for (const r of reports) s.nodes[r.node] = r;
  return s;
}

/** failover.enabled false: the gate follows the heartbeats, as a VIP with a health check would. */
const routingOnly: RouteOptions = { automatic: false, maxLagBytes: null };

function routes(reports: NodeReport[], cluster: ClusterState = state(), options: RouteOptions = routingOnly): Routes {
  return computeRoutes(core(reports, cluster), options);
}

function router(reports: NodeReport[], s: ClusterState = state(), fallbackToPrimary = true, maxLagBytes: number | null = null): Router {
  const r = new Router({ fallbackToPrimary, holdMs: 1000 }, silentLogger);
  r.publish(routes(reports, s, { automatic: false, maxLagBytes }));
  return r;
}

function refused(t: tap.Test, decision: RouteDecision) {
  t.equal(decision.ok, false, `refused: ${JSON.stringify(decision)}`);
  if (decision.ok) throw new Error('not refused');
  return decision.refusal;
}

t.test('one primary and one standby', async (t) => {
  const health = [node('n1', 'primary'), node('n2', 'standby')];
  t.same(routes(health), { primary: 'n1', heldBecause: undefined, standbys: ['n2'], readWriteRefusal: undefined, claimants: ['n1'] });
  const r = router(health);
  t.same(r.decideNow('readWrite'), { ok: true, node: 'n1' });
  t.same(r.decideNow('readOnly'), { ok: true, node: 'n2' });
  t.same(r.decideNow('readOnly'), { ok: true, node: 'n2' });
});

t.test('a new Router with nothing published refuses read-write with no-primary', async (t) => {
  const r = new Router({ fallbackToPrimary: true, holdMs: 1000 }, silentLogger);
  const refusal = refused(t, r.decideNow('readWrite'));
  t.equal(refusal.reason, 'no-primary');
  t.equal(refused(t, r.decideNow('readOnly')).reason, 'no-standby');
});

t.test('primary down: read-write refused with 57P03, read-only still served by the standby', async (t) => {
  const health = [node('n1', 'primary', 'down'), node('n2', 'standby')];
  const computed = routes(health, state({ primary: 'n1', systemIdentifier: SYSID }));
  t.equal(computed.primary, undefined);
  t.same(computed.standbys, ['n2']);
  const r = router(health, state({ primary: 'n1', systemIdentifier: SYSID }));
  const refusal = refused(t, r.decideNow('readWrite'));
  t.equal(refusal.reason, 'no-primary');
  t.equal(refusal.code, '57P03');
  t.match(refusal.message, /no verified primary/);
  t.same(r.decideNow('readOnly'), { ok: true, node: 'n2' });
});

t.test('two primaries: split-brain refusal naming both', async (t) => {
  const health = [node('n1', 'primary'), node('n2', 'primary'), node('n3', 'standby')];
  const computed = routes(health, state({ primary: 'n1' }));
  t.equal(computed.primary, undefined, 'no primary even though the state names n1');
  t.same(computed.claimants, ['n1', 'n2']);
  const r = router(health, state({ primary: 'n1' }));
  const refusal = refused(t, r.decideNow('readWrite'));
  t.equal(refusal.reason, 'split-brain');
  t.equal(refusal.code, '57P03');
  t.match(refusal.detail, /\bn1\b/);
  t.match(refusal.detail, /\bn2\b/);
  t.notMatch(refusal.detail, /\bn3\b/, 'the standby is not a claimant');
  // Read-only still goes to the standby.
  t.same(r.decideNow('readOnly'), { ok: true, node: 'n3' });
});

t.test('with automatic failover, a second primary beside the recorded one closes writes until the core fences it', async (t) => {
  const sim = adoptedCluster();
  const options: RouteOptions = { automatic: true, maxLagBytes: null };
  t.equal(computeRoutes(sim.state, options).primary, 'n1');
  sim.primary('n2');
  t.same(sim.types(), ['drop-sessions n2', 'fence n2', 'persist'], 'the core fences n2');
  const during = computeRoutes(sim.state, options);
  t.equal(during.primary, undefined, 'until the fence is recorded, neither is routed');
  t.equal(during.readWriteRefusal?.reason, 'split-brain');
  sim.answerPersist();
  t.equal(computeRoutes(sim.state, options).primary, 'n1', 'once n2 is fenced, writes go to the recorded primary again');
});

t.test('read-only falls back to no primary during split brain', async (t) => {
  const r = router([node('n1', 'primary'), node('n2', 'primary')], state(), true);
  const refusal = refused(t, r.decideNow('readOnly'));
  t.equal(refusal.reason, 'no-standby');
});

t.test('a fenced node is never routed', async (t) => {
  // Fenced old primary that came back: the promoted node stays the only primary, no split brain.
  const computed = routes([node('old', 'primary'), node('new', 'primary'), node('s1', 'standby')], state({ primary: 'new', fenced: ['old'] }));
  t.equal(computed.primary, 'new');
  t.same(computed.claimants, ['new']);
  t.equal(computed.readWriteRefusal, undefined);
  // Fenced standby: never in the read-only set.
  const r = router([node('p', 'primary'), node('s1', 'standby'), node('s2', 'standby')], state({ fenced: ['s1'] }));
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const d = r.decideNow('readOnly');
    if (d.ok) seen.add(d.node);
  }
  t.same([...seen], ['s2']);
  // Fenced only primary: refused, not routed.
  const fencedPrimary = router([node('p', 'primary'), node('s1', 'standby')], state({ fenced: ['p'] }), true);
  t.equal(refused(t, fencedPrimary.decideNow('readWrite')).reason, 'no-primary');
  t.same(fencedPrimary.decideNow('readOnly'), { ok: true, node: 's1' });
  // Fenced everything: nothing at all, not even the fallback.
  const allFenced = router([node('p', 'primary')], state({ fenced: ['p'] }), true);
  t.equal(refused(t, allFenced.decideNow('readOnly')).reason, 'no-standby');
});

t.test('suspect primary is still routed, down or unknown is not', async (t) => {
  t.equal(routes([node('n1', 'primary', 'suspect'), node('n2', 'standby')]).primary, 'n1');
  t.same(routes([node('n1', 'primary'), node('n2', 'standby', 'suspect')]).standbys, ['n2'], 'suspect standby kept');
  t.equal(routes([node('n1', 'primary', 'down'), node('n2', 'standby')]).primary, undefined);
  t.equal(routes([node('n1', 'primary', 'unknown')]).primary, undefined);
  t.same(routes([node('n1', 'primary'), node('n2', 'standby', 'down')]).standbys, [], 'down standby dropped');
  // Suspect but never reached: nothing known about its role.
  const neverSeen: NodeReport = { node: 'n1', status: 'suspect' };
  t.equal(routes([neverSeen]).primary, undefined);
  const r = router([node('n1', 'primary', 'suspect')]);
  t.same(r.decideNow('readWrite'), { ok: true, node: 'n1' });
});

t.test('with automatic failover a suspect primary holds new writers instead', async (t) => {
  const sim = adoptedCluster();
  sim.report({ node: 'n1', status: 'suspect', inRecovery: false });
  const computed = computeRoutes(sim.state, { automatic: true, maxLagBytes: null });
  t.equal(computed.primary, undefined);
  t.match(computed.heldBecause, /n1 missed a heartbeat/);
  t.equal(computed.readWriteRefusal?.reason, 'no-primary', 'what a held client is told if the hold runs out');
});

t.test('a standby of another cluster (different system identifier) is excluded', async (t) => {
  const health = [node('p', 'primary'), node('s1', 'standby'), node('stranger', 'standby', 'up', { systemIdentifier: OTHER_SYSID })];
  t.same(routes(health).standbys, ['s1'], 'compared with the primary');
  // With no primary, the state's system identifier decides.
  const noPrimary = [node('s1', 'standby'), node('stranger', 'standby', 'up', { systemIdentifier: OTHER_SYSID })];
  t.same(routes(noPrimary, state({ systemIdentifier: SYSID })).standbys, ['s1'], 'compared with the state');
  // A primary of another cluster is not a claimant either.
  const foreignPrimary = [node('p', 'primary'), node('x', 'primary', 'up', { systemIdentifier: OTHER_SYSID })];
  const computed = routes(foreignPrimary, state({ systemIdentifier: SYSID }));
  t.equal(computed.primary, 'p');
  t.same(computed.claimants, ['p']);
  const r = router(health);
  for (let i = 0; i < 4; i++) t.same(r.decideNow('readOnly'), { ok: true, node: 's1' });
});

t.test('maxLagBytes excludes a lagging standby', async (t) => {
  const health = [
    node('p', 'primary', 'up', { currentLsn: '0/5000000' }),
    node('near', 'standby', 'up', { replayLsn: '0/4FFFF00' }), // 256 bytes behind
    node('edge', 'standby', 'up', { replayLsn: '0/4FFF000' }), // 4096 behind: exactly the limit
    node('far', 'standby', 'up', { replayLsn: '0/4000000' }), // 16 MiB behind
    node('nolsn', 'standby', 'up', { replayLsn: undefined }),
  ];
  const lagLimit = (maxLagBytes: number | null): RouteOptions => ({ automatic: false, maxLagBytes });
  t.same(routes(health, state(), lagLimit(4096)).standbys, ['near', 'edge']);
  t.same(routes(health, state(), lagLimit(0)).standbys, []);
  t.same(routes(health, state(), lagLimit(null)).standbys, ['near', 'edge', 'far', 'nolsn'], 'null: no limit');
  // Across the 32-bit boundary of the LSN halves.
  const wide = [node('p', 'primary', 'up', { currentLsn: '1/00000010' }), node('s', 'standby', 'up', { replayLsn: '0/FFFFFFF0' })];
  t.same(routes(wide, state(), lagLimit(32)).standbys, ['s']);
  t.same(routes(wide, state(), lagLimit(31)).standbys, []);
  // No primary: the standby's own receive/replay gap is used.
  const orphan = [node('s', 'standby', 'up', { receiveLsn: '0/2000000', replayLsn: '0/1000000' })];
  t.same(routes(orphan, state(), lagLimit(1024)).standbys, []);
  t.same(routes(orphan, state(), lagLimit(0x1000000)).standbys, ['s']);
  const r = router(health, state(), true, 4096);
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const d = r.decideNow('readOnly');
    if (d.ok) seen.add(d.node);
  }
  t.same([...seen].sort(), ['edge', 'near']);
});

t.test('no standby: fallbackToPrimary decides', async (t) => {
  const health = [node('p', 'primary'), node('s', 'standby', 'down')];
  t.same(router(health, state(), true).decideNow('readOnly'), { ok: true, node: 'p' });
  const refusal = refused(t, router(health, state(), false).decideNow('readOnly'));
  t.equal(refusal.reason, 'no-standby');
  t.equal(refusal.code, '57P03');
  t.match(refusal.detail, /fallbackToPrimary is off/);
  // Fallback on but no primary either.
  const none = refused(t, router([node('p', 'primary', 'down')], state(), true).decideNow('readOnly'));
  t.equal(none.reason, 'no-standby');
  t.match(none.detail, /no verified primary/);
});

t.test('round robin over two standbys', async (t) => {
  const r = router([node('p', 'primary'), node('s1', 'standby'), node('s2', 'standby')]);
  const picks: string[] = [];
  for (let i = 0; i < 8; i++) {
    const d = r.decideNow('readOnly');
    picks.push(d.ok ? d.node : 'refused');
  }
  t.same(picks.filter((p) => p === 's1').length, 4);
  t.same(picks.filter((p) => p === 's2').length, 4);
  for (let i = 1; i < picks.length; i++) t.not(picks[i], picks[i - 1], `pick ${i} alternates`);
  // Read-write clients in between do not disturb it.
  const before = r.decideNow('readOnly');
  r.decideNow('readWrite');
  const after = r.decideNow('readOnly');
  t.ok(before.ok && after.ok && before.node !== after.node, 'still alternating');
});

t.test('state.primary naming another node than the only claimant: refused', async (t) => {
  const health = [node('n1', 'standby'), node('n2', 'primary')];
  const computed = routes(health, state({ primary: 'n1' }));
  t.equal(computed.primary, undefined);
  t.same(computed.claimants, ['n2']);
  const r = router(health, state({ primary: 'n1' }));
  const refusal = refused(t, r.decideNow('readWrite'));
  t.equal(refusal.reason, 'no-primary');
  t.equal(refusal.code, '57P03');
  t.match(refusal.detail, /n2 claims primary/);
  t.match(refusal.detail, /names n1/);
  // With the matching name, or no name at all, the same node is the primary.
  t.equal(routes(health, state({ primary: 'n2' })).primary, 'n2');
  t.equal(routes(health, state()).primary, 'n2');
});

t.test('Router emits change only when routing changes', async (t) => {
  const r = new Router({ fallbackToPrimary: true, holdMs: 1000 }, silentLogger);
  const events: Array<[string | undefined, string | undefined]> = [];
  r.on('change', (next, previous) => events.push([next.primary, previous.primary]));
  const health = [node('n1', 'primary'), node('n2', 'standby')];
  r.publish(routes(health));
  r.publish(routes(health));
  r.publish(routes([node('n1', 'primary', 'down'), node('n2', 'standby')]));
  r.publish(routes([node('n1', 'primary'), node('n2', 'primary')]));
  t.same(events, [
    ['n1', undefined],
    [undefined, 'n1'],
    [undefined, undefined],
  ]);
  t.equal(r.current().readWriteRefusal?.reason, 'split-brain');
});

t.test('one authority: read-write routing is the failover core\'s write gate, whatever the heartbeats show', async (t) => {
  const sim = adoptedCluster();
  const options: RouteOptions = { automatic: true, maxLagBytes: null };
  sim.standby('n2', '0/3000000', 1, false);
  sim.down('n1');
  t.equal(sim.state.phase.kind, 'failover', 'the core fails over');
  // Say n1 answered again mid-failover, as the only node out of recovery: the heartbeats alone would route to it.
  const answered = structuredClone(sim.state);
  answered.nodes.n1 = node('n1', 'primary');
  const closed = computeRoutes(answered, options);
  t.equal(closed.primary, undefined, 'the core not naming it closes writes');
  t.equal(closed.readWriteRefusal?.reason, 'failover-in-progress', "with the core's reason");
  t.match(closed.heldBecause, /failover from n1 to n2/, 'and its hold');
  t.same(closed.standbys, ['n2'], 'read-only routing is unaffected');
  t.same(routes([node('n1', 'primary'), node('n2', 'standby')]).primary, 'n1', 'the same heartbeats, judged alone (routing only), would have routed n1');
  // At every step of a whole failover, the published primary is exactly the gate's node.
  for (const s of [sim.answerPersist(), sim.send({ type: 'promoted', node: 'n2' }), sim.primary('n2', '0/3000100', 2), sim.answerPersist()]) {
    t.ok(Array.isArray(s));
    t.equal(computeRoutes(sim.state, options).primary, writeGate(sim.state, options).node);
  }
  t.equal(computeRoutes(sim.state, options).primary, 'n2', 'the new primary once recorded');
});

t.test('held read-write clients wait until a published decision releases them; read-only clients never wait', async (t) => {
  const r = new Router({ fallbackToPrimary: true, holdMs: 60_000 }, silentLogger);
  const open = routes([node('n1', 'primary'), node('n2', 'standby')]);
  r.publish({ ...open, primary: undefined, heldBecause: 'test' });
  let settled = false;
  const pending = r.decide('readWrite').then((d) => {
    settled = true;
    return d;
  });
  const readOnly = await r.decide('readOnly');
  t.ok(readOnly.ok, 'read-only decided while writes are held');
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(settled, false, 'the read-write client is still waiting');
  t.equal(r.heldClients, 1);
  r.publish({ ...open, primary: undefined, heldBecause: 'test, another step' });
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(settled, false, 'a new decision that still holds keeps it waiting');
  r.publish(open);
  const decision = await pending;
  t.same(decision, { ok: true, node: 'n1' });
  t.equal(r.heldClients, 0);
  t.equal(r.reroutingClients, 0, 'a held client is not counted as waiting for a reroute');
});

t.test('a held client is refused when holdMs runs out without a primary', async (t) => {
  const r = new Router({ fallbackToPrimary: true, holdMs: 20 }, silentLogger);
  const closed = routes([node('n1', 'primary', 'down'), node('n2', 'standby')]);
  r.publish({ ...closed, heldBecause: 'test' });
  const decision = await r.decide('readWrite');
  t.equal(decision.ok, false);
  if (!decision.ok) t.equal(decision.refusal.code, '57P03');
});
