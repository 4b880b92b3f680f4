// computeRoutes and Router.decideNow: who read-write and read-only clients may reach, and why not.

import t from 'tap';
import { silentLogger } from '../../src/log';
import type { HealthStatus, NodeHealth, NodeObservation } from '../../src/monitor/observation';
import { computeRoutes, type Routes } from '../../src/routing/routes';
import { Router, type RouteDecision } from '../../src/routing/router';
import { emptyState, type ClusterState } from '../../src/state/cluster-state';

const SYSID = '7311111111111111111';
const OTHER_SYSID = '7322222222222222222';

function node(
  name: string,
  role: 'primary' | 'standby',
  status: HealthStatus = 'up',
  extra: Partial<NodeObservation> = {},
): NodeHealth {
  const seen: NodeObservation = {
    node: name,
    at: 1_700_000_000_000,
    reachable: true,
    inRecovery: role === 'standby',
    systemIdentifier: SYSID,
    timeline: 1,
    ...(role === 'primary' ? { currentLsn: '0/3000000' } : { receiveLsn: '0/3000000', replayLsn: '0/3000000' }),
    ...extra,
  };
  return {
    node: name,
    status,
    consecutiveFailures: status === 'up' ? 0 : status === 'suspect' ? 1 : 3,
    last: status === 'up' ? seen : { node: name, at: seen.at + 500, reachable: false, error: 'timeout' },
    lastReachable: seen,
  };
}

function state(extra: Partial<ClusterState> = {}): ClusterState {
  return { ...emptyState(), ...extra };
}

function router(health: NodeHealth[], s: ClusterState = state(), fallbackToPrimary = true, maxLagBytes: number | null = null): Router {
  const r = new Router({ fallbackToPrimary, maxLagBytes, holdMs: 1000 }, silentLogger);
  r.update(health, s);
  return r;
}

function refused(t: tap.Test, decision: RouteDecision) {
  t.equal(decision.ok, false, `refused: ${JSON.stringify(decision)}`);
  if (decision.ok) throw new Error('not refused');
  return decision.refusal;
}

const noLag = { maxLagBytes: null };

t.test('one primary and one standby', async (t) => {
  const health = [node('n1', 'primary'), node('n2', 'standby')];
  const routes = computeRoutes(health, state(), noLag);
  t.same(routes, { primary: 'n1', standbys: ['n2'], readWriteRefusal: undefined, claimants: ['n1'] });
  const r = router(health);
  t.same(r.decideNow('readWrite'), { ok: true, node: 'n1' });
  t.same(r.decideNow('readOnly'), { ok: true, node: 'n2' });
  t.same(r.decideNow('readOnly'), { ok: true, node: 'n2' });
});

t.test('a new Router with no health yet refuses read-write with no-primary', async (t) => {
  const r = new Router({ fallbackToPrimary: true, maxLagBytes: null, holdMs: 1000 }, silentLogger);
  const refusal = refused(t, r.decideNow('readWrite'));
  t.equal(refusal.reason, 'no-primary');
  t.equal(refused(t, r.decideNow('readOnly')).reason, 'no-standby');
});

t.test('primary down: read-write refused with 57P03, read-only still served by the standby', async (t) => {
  const health = [node('n1', 'primary', 'down'), node('n2', 'standby')];
  const routes = computeRoutes(health, state({ primary: 'n1', systemIdentifier: SYSID }), noLag);
  t.equal(routes.primary, undefined);
  t.same(routes.standbys, ['n2']);
  const r = router(health, state({ primary: 'n1', systemIdentifier: SYSID }));
  const refusal = refused(t, r.decideNow('readWrite'));
  t.equal(refusal.reason, 'no-primary');
  t.equal(refusal.code, '57P03');
  t.match(refusal.message, /no verified primary/);
  t.same(r.decideNow('readOnly'), { ok: true, node: 'n2' });
});

t.test('two primaries: split-brain refusal naming both', async (t) => {
  const health = [node('n1', 'primary'), node('n2', 'primary'), node('n3', 'standby')];
  const routes = computeRoutes(health, state({ primary: 'n1' }), noLag);
  t.equal(routes.primary, undefined, 'no primary even though the state names n1');
  t.same(routes.claimants, ['n1', 'n2']);
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

t.test('read-only falls back to no primary during split brain', async (t) => {
  const r = router([node('n1', 'primary'), node('n2', 'primary')], state(), true);
  const refusal = refused(t, r.decideNow('readOnly'));
  t.equal(refusal.reason, 'no-standby');
});

t.test('a fenced node is never routed', async (t) => {
  // Fenced old primary that came back: the promoted node stays the only primary, no split brain.
  const health = [node('old', 'primary'), node('new', 'primary'), node('s1', 'standby')];
  const routes = computeRoutes(health, state({ primary: 'new', fenced: ['old'] }), noLag);
  t.equal(routes.primary, 'new');
  t.same(routes.claimants, ['new']);
  t.equal(routes.readWriteRefusal, undefined);
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
  t.equal(computeRoutes([node('n1', 'primary', 'suspect'), node('n2', 'standby')], state(), noLag).primary, 'n1');
  t.same(computeRoutes([node('n1', 'primary'), node('n2', 'standby', 'suspect')], state(), noLag).standbys, ['n2'], 'suspect standby kept');
  t.equal(computeRoutes([node('n1', 'primary', 'down'), node('n2', 'standby')], state(), noLag).primary, undefined);
  t.equal(computeRoutes([node('n1', 'primary', 'unknown')], state(), noLag).primary, undefined);
  t.same(computeRoutes([node('n1', 'primary'), node('n2', 'standby', 'down')], state(), noLag).standbys, [], 'down standby dropped');
  // Suspect but never reached: nothing known about its role.
  const neverSeen: NodeHealth = { node: 'n1', status: 'suspect', consecutiveFailures: 1 };
  t.equal(computeRoutes([neverSeen], state(), noLag).primary, undefined);
  const r = router([node('n1', 'primary', 'suspect')]);
  t.same(r.decideNow('readWrite'), { ok: true, node: 'n1' });
});

t.test('a standby of another cluster (different system identifier) is excluded', async (t) => {
  const health = [node('p', 'primary'), node('s1', 'standby'), node('stranger', 'standby', 'up', { systemIdentifier: OTHER_SYSID })];
  t.same(computeRoutes(health, state(), noLag).standbys, ['s1'], 'compared with the primary');
  // With no primary, the state's system identifier decides.
  const noPrimary = [node('s1', 'standby'), node('stranger', 'standby', 'up', { systemIdentifier: OTHER_SYSID })];
  t.same(computeRoutes(noPrimary, state({ systemIdentifier: SYSID }), noLag).standbys, ['s1'], 'compared with the state');
  // A primary of another cluster is not a claimant either.
  const foreignPrimary = [node('p', 'primary'), node('x', 'primary', 'up', { systemIdentifier: OTHER_SYSID })];
  const routes = computeRoutes(foreignPrimary, state({ systemIdentifier: SYSID }), noLag);
  t.equal(routes.primary, 'p');
  t.same(routes.claimants, ['p']);
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
  t.same(computeRoutes(health, state(), { maxLagBytes: 4096 }).standbys, ['near', 'edge']);
  t.same(computeRoutes(health, state(), { maxLagBytes: 0 }).standbys, []);
  t.same(computeRoutes(health, state(), { maxLagBytes: null }).standbys, ['near', 'edge', 'far', 'nolsn'], 'null: no limit');
  // Across the 32-bit boundary of the LSN halves.
  const wide = [node('p', 'primary', 'up', { currentLsn: '1/00000010' }), node('s', 'standby', 'up', { replayLsn: '0/FFFFFFF0' })];
  t.same(computeRoutes(wide, state(), { maxLagBytes: 32 }).standbys, ['s']);
  t.same(computeRoutes(wide, state(), { maxLagBytes: 31 }).standbys, []);
  // No primary: the standby's own receive/replay gap is used.
  const orphan = [node('s', 'standby', 'up', { receiveLsn: '0/2000000', replayLsn: '0/1000000' })];
  t.same(computeRoutes(orphan, state(), { maxLagBytes: 1024 }).standbys, []);
  t.same(computeRoutes(orphan, state(), { maxLagBytes: 0x1000000 }).standbys, ['s']);
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
  const routes: Routes = computeRoutes(health, state({ primary: 'n1' }), noLag);
  t.equal(routes.primary, undefined);
  t.same(routes.claimants, ['n2']);
  const r = router(health, state({ primary: 'n1' }));
  const refusal = refused(t, r.decideNow('readWrite'));
  t.equal(refusal.reason, 'no-primary');
  t.equal(refusal.code, '57P03');
  t.match(refusal.detail, /n2 claims primary/);
  t.match(refusal.detail, /names n1/);
  // With the matching name, or no name at all, the same node is the primary.
  t.equal(computeRoutes(health, state({ primary: 'n2' }), noLag).primary, 'n2');
  t.equal(computeRoutes(health, state(), noLag).primary, 'n2');
});

t.test('Router emits change only when routing changes', async (t) => {
  const r = new Router({ fallbackToPrimary: true, maxLagBytes: null, holdMs: 1000 }, silentLogger);
  const events: Array<[string | undefined, string | undefined]> = [];
  r.on('change', (next, previous) => events.push([next.primary, previous.primary]));
  const health = [node('n1', 'primary'), node('n2', 'standby')];
  r.update(health, state());
  r.update(health, state());
  r.update([node('n1', 'primary', 'down'), node('n2', 'standby')], state());
  r.update([node('n1', 'primary'), node('n2', 'primary')], state());
  t.same(events, [
    ['n1', undefined],
    [undefined, 'n1'],
    [undefined, undefined],
  ]);
  t.equal(r.current().readWriteRefusal?.reason, 'split-brain');
});

t.test('the write gate: only the node the failover core names may take writes', async (t) => {
  const health = [node('n1', 'primary'), node('n2', 'standby')];
  const failoverRefusal = { reason: 'failover-in-progress' as const, code: '57P03' as const, message: 'no verified primary available: failover in progress' };
  t.equal(computeRoutes(health, state(), noLag, { writable: 'n1', refusal: undefined }).primary, 'n1');
  const closed = computeRoutes(health, state(), noLag, { writable: undefined, refusal: failoverRefusal });
  t.equal(closed.primary, undefined, 'the core not naming it closes writes');
  t.equal(closed.readWriteRefusal?.reason, 'failover-in-progress', 'with the core\'s reason');
  t.same(closed.standbys, ['n2'], 'read-only routing is unaffected');
  t.equal(computeRoutes(health, state(), noLag, { writable: 'n2', refusal: undefined }).primary, undefined, 'a standby named writable is not routed');
});

t.test('held read-write clients wait for release; read-only clients never wait', async (t) => {
  const r = new Router({ fallbackToPrimary: true, maxLagBytes: null, holdMs: 60_000 }, silentLogger);
  r.update([node('n1', 'primary'), node('n2', 'standby')], state());
  r.hold('test');
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
  r.release();
  const decision = await pending;
  t.same(decision, { ok: true, node: 'n1' });
  t.equal(r.heldClients, 0);
});

t.test('a held client is refused when holdMs runs out without a primary', async (t) => {
  const r = new Router({ fallbackToPrimary: true, maxLagBytes: null, holdMs: 20 }, silentLogger);
  r.update([node('n1', 'primary', 'down'), node('n2', 'standby')], state());
  r.hold('test');
  const decision = await r.decide('readWrite');
  t.equal(decision.ok, false);
  if (!decision.ok) t.equal(decision.refusal.code, '57P03');
});
