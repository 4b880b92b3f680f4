// The failover core's rules for several pgfloat instances sharing one cluster state (state.store etcd).
//
// One instance, the decider, makes every decision the single-instance core makes. The others
// follow: they route by the state the decider writes, hold writers while the primary is away,
// and drop their sessions to every node the state fences. Three rules keep them safe together:
// - a failover needs a majority of the live instances to see the primary down, so one instance
//   cut off from it cannot cause one;
// - a promotion waits until every live instance has applied the fence of the old primary, so no
//   instance still writes to it when the new one takes writes;
// - an instance without a valid lease routes no writes, because the others stop waiting for it
//   once the lease expires.

import type { ClusterState } from '../cluster/state';
import { dropSessions, log } from './helpers';
import type { Coordination, CoreState, FailoverAction, FailoverOptions } from './types';

export function isFollower(s: CoreState): boolean {
  return s.coordination !== undefined && !s.coordination.decider;
}

/** Without a valid lease an instance may be presumed gone by the others: it must not route writes. */
export function coordinationAllowsWrites(s: CoreState): boolean {
  return s.coordination === undefined || s.coordination.connected;
}

export function absorbCoordination(s: CoreState, next: Coordination, out: FailoverAction[]): void {
  const before = s.coordination;
  s.coordination = next;
  const primary = s.cluster.primary;
  if (before?.connected !== false && !next.connected && primary !== undefined) {
    // The others will treat this instance as having let go of the primary once its lease
    // expires; its sessions there must be gone before that.
    dropSessions(s, out, primary, `this instance lost its etcd lease (${next.disconnectedReason ?? 'unreachable'})`, 'no-lease');
    log(out, 'error', 'lost the etcd lease: routing no writes until it is renewed', { reason: next.disconnectedReason, epoch: s.cluster.epoch });
  } else if (before?.connected === false && next.connected) {
    log(out, 'info', 'etcd lease renewed: routing by the shared state again', { epoch: s.cluster.epoch });
  }
  if (before?.decider !== true && next.decider) {
    log(out, 'info', 'this instance is now the decider', { epoch: s.cluster.epoch, peers: Object.keys(next.peers) });
  } else if (before?.decider === true && !next.decider) {
    log(out, 'warn', 'this instance is no longer the decider', { epoch: s.cluster.epoch, decider: next.deciderName });
    if (s.phase.kind === 'failover' || s.phase.kind === 'failed') {
      // The new decider reads the persisted state (the fence, or the promoted node) and finishes the change from there.
      log(out, 'warn', 'leaving the failover in progress to the new decider', { phase: s.phase.kind, epoch: s.cluster.epoch });
      s.phase = { kind: 'steady' };
    }
  }
}

/** A newer state from the shared store: take it, and drop the sessions to every node it newly fences. */
export function absorbClusterChange(s: CoreState, cluster: ClusterState, out: FailoverAction[]): void {
  if (cluster.revision <= s.cluster.revision) return;
  const newlyFenced = cluster.fenced.filter((n) => !s.cluster.fenced.includes(n));
  const announced = cluster.switchover !== undefined && cluster.switchover.drainUntil !== s.cluster.switchover?.drainUntil ? cluster.switchover : undefined;
  const previousPrimary = s.cluster.primary;
  s.cluster = cluster;
  if (s.lastPrimaryLsn === undefined || cluster.primary !== previousPrimary) s.lastPrimaryLsn = cluster.lastKnownPrimaryLsn;
  // The decider dropped its own sessions when it decided the fence.
  if (isFollower(s)) for (const node of newlyFenced) dropSessions(s, out, node, `fenced by the decider at revision ${cluster.revision}`, 'fenced');
  if (isFollower(s) && announced !== undefined) {
    // Until the fence arrives, this instance's sessions on the old primary move (or close) at
    // their transaction boundaries, as the decider's do; the fence then drops whatever is left.
    // Outstanding until its answer (drained), like a drop: the decider fences once this instance has applied it.
    const drainMs = Math.max(0, Date.parse(announced.drainUntil) - s.now);
    s.droppingSessions = [...s.droppingSessions, announced.from];
    out.push({ type: 'drain-sessions', node: announced.from, drainMs });
    log(out, 'warn', `switchover from ${announced.from} to ${announced.to} announced by the decider: holding new writers; moving or closing sessions on ${announced.from} at transaction boundaries (up to ${drainMs} ms)`, {
      revision: cluster.revision,
      epoch: cluster.epoch,
    });
  }
  if (s.phase.kind === 'bootstrap' && cluster.primary !== undefined && !s.persisting) s.phase = { kind: 'steady' };
  log(out, 'info', 'cluster state changed', { revision: cluster.revision, epoch: cluster.epoch, primary: cluster.primary, fenced: cluster.fenced });
}

/**
 * A follower routes by the state and the primary's heartbeats: it holds writers while the primary
 * is away, for the decider to act. When the primary is only away from this instance (the others
 * still see it, past the window in which they would have noticed), nothing is coming: writers
 * are refused at once, and a multi-host client moves on to another instance.
 */
export function follow(s: CoreState, options: FailoverOptions): void {
  const primary = s.cluster.primary;
  s.phase = primary === undefined ? { kind: 'bootstrap' } : { kind: 'steady' };
  s.blocked = undefined;
  if (primary === undefined) return;
  if (!coordinationAllowsWrites(s)) {
    // Refused at once, not held: the client's next host (another instance) can serve it now.
    s.heldBecause = undefined;
    return;
  }
  const r = s.nodes[primary];
  s.primaryDownSince = r?.status === 'down' ? (s.primaryDownSince ?? s.now) : undefined;
  s.degenerateSince = s.cluster.fenced.length === 0 ? undefined : (s.degenerateSince ?? s.now);
  // A freshly promoted primary is only writable once this instance has seen it out of recovery too.
  const away = s.cluster.fenced.includes(primary) || r?.status !== 'up' || r.inRecovery !== false;
  const switching = s.cluster.switchover?.from === primary && s.now < Date.parse(s.cluster.switchover.drainUntil);
  const votes = downVotes(s, primary);
  const onlyHere = r?.status === 'down' && votes?.majority === false && s.now - (s.primaryDownSince ?? s.now) >= options.standbyConfirmationMs;
  if (onlyHere) {
    s.blocked = `the primary ${primary} is unreachable from this pgfloat instance, but the other instances still reach it: connect through another instance`;
    s.heldBecause = undefined;
    return;
  }
  if (switching && s.heldBecause === undefined) {
    s.heldBecause = `switchover from ${primary} to ${s.cluster.switchover!.to}, announced by the decider`;
  } else if (away && s.heldBecause === undefined) {
    const why = s.cluster.fenced.includes(primary) ? 'fenced' : r?.status !== 'up' ? (r?.status ?? 'not yet seen') : 'not yet seen out of recovery';
    s.heldBecause = `primary ${primary} is ${why}; the decider decides`;
  } else if (!away && !switching && s.heldBecause !== undefined) {
    s.heldBecause = undefined;
  }
}

/**
 * How many live instances, this one included, see `node` down, and whether that is a majority;
 * undefined for a single instance (it is its own majority).
 */
export function downVotes(s: CoreState, node: string): { down: number; live: number; majority: boolean } | undefined {
  const c = s.coordination;
  if (c === undefined) return undefined;
  const peers = Object.values(c.peers);
  const down = (s.nodes[node]?.status === 'down' ? 1 : 0) + peers.filter((p) => p.view[node] === 'down').length;
  const live = peers.length + 1;
  return { down, live, majority: down * 2 > live };
}
