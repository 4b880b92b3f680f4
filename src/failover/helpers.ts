// Small pure helpers shared by the failover core's decisions and its operator commands.

import type { ClusterState, FailoverRecord } from '../cluster/state';
import type { CoreState, FailoverAction, FailoverOptions, FailoverStep, NodeReport, Outcome } from './types';
import { lagBytes, lsnToBigInt } from '../cluster/lsn';

export function answer(s: CoreState, accepted: boolean, message: string): void {
  s.operatorAnswer = { accepted, message };
}

export function claimants(s: CoreState): string[] {
  return s.names.filter((n) => {
    const r = s.nodes[n];
    return r?.status === 'up' && r.inRecovery === false && !s.cluster.fenced.includes(n);
  });
}

export function allSeen(s: CoreState): boolean {
  return s.names.every((n) => s.nodes[n]?.status === 'up' || s.nodes[n]?.status === 'down');
}

export function sameSystem(s: CoreState, r: NodeReport): boolean {
  return s.cluster.systemIdentifier === undefined || r.systemIdentifier === s.cluster.systemIdentifier;
}

/** In recovery, of this cluster, on the current timeline or later, streaming: an operator rejoined it. */
export function isRejoinedStandby(s: CoreState, r: NodeReport): boolean {
  return r.status === 'up' && r.inRecovery === true && sameSystem(s, r) && (r.timeline ?? 0) >= (s.cluster.timeline ?? 0) && r.seesPrimary === true;
}

/** Asks the relay to end every session on `node`; its answer (sessions-dropped) is awaited before a promotion. */
export function dropSessions(s: CoreState, out: FailoverAction[], node: string, reason: string, because: 'fenced' | 'no-lease'): void {
  s.droppingSessions = [...s.droppingSessions, node];
  out.push({ type: 'drop-sessions', node, reason, because });
}

export function dropAndFence(s: CoreState, out: FailoverAction[], node: string, reason: string): void {
  dropSessions(s, out, node, reason, 'fenced');
  out.push({ type: 'fence', node, reason });
}

export function persist(s: CoreState, out: FailoverAction[], cluster: Omit<ClusterState, 'revision'> & { revision?: number }): void {
  const { revision: _ignored, ...rest } = cluster;
  const next = { ...rest, lastKnownPrimaryLsn: s.lastPrimaryLsn ?? s.cluster.lastKnownPrimaryLsn };
  s.persisting = true;
  out.push({ type: 'persist', expectedRevision: s.cluster.revision, cluster: next });
}

export function setBlocked(s: CoreState, out: FailoverAction[], reason: string | undefined): void {
  if (s.blocked === reason) return;
  s.blocked = reason;
  if (reason !== undefined) log(out, 'warn', `no failover: ${reason}`, { epoch: s.cluster.epoch });
}

export function record(
  s: CoreState,
  reason: string,
  oldPrimary: string | undefined,
  newPrimary: string,
  oldPrimaryLsn?: string,
  newPrimaryLsn?: string,
): FailoverRecord {
  return { at: new Date(s.now).toISOString(), epoch: s.cluster.epoch + 1, reason, oldPrimary, newPrimary, oldPrimaryLsn, newPrimaryLsn };
}

export function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

/** Sorts standbys with the most WAL received first: promoting it loses the least. */
export function furthestAhead(a: NodeReport, b: NodeReport): number {
  const diff = lsnOrZero(b.receiveLsn) - lsnOrZero(a.receiveLsn);
  return diff > 0n ? 1 : diff < 0n ? -1 : 0;
}

/**
 * WAL the primary had written when last seen that `node` has not received: what promoting it would
 * lose. failover.maxLagBytes bounds it; status and metrics show the same figure.
 */
export function receiveLagOf(s: CoreState, node: string): number | undefined {
  const r = s.nodes[node];
  return r?.inRecovery === true ? lagBytes(s.lastPrimaryLsn, r.receiveLsn) : undefined;
}

/** WAL the primary had written when last seen that `node` has not replayed: how far behind its readers are. */
export function replayLagOf(s: CoreState, node: string): number | undefined {
  const r = s.nodes[node];
  return r?.inRecovery === true ? lagBytes(s.lastPrimaryLsn, r.replayLsn) : undefined;
}

export function lsnOrZero(lsn: string | undefined): bigint {
  return lsn === undefined ? 0n : lsnToBigInt(lsn);
}

export function log(out: FailoverAction[], level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>): void {
  out.push({ type: 'log', level, message, fields });
}

export function failoverPhase(
  s: CoreState,
  opts: FailoverOptions,
  oldPrimary: string,
  target: string,
  reason: string,
  stepName: FailoverStep,
  planned = false,
): CoreState['phase'] {
  return {
    kind: 'failover',
    planned,
    step: stepName,
    oldPrimary,
    target,
    reason,
    startedAt: s.now,
    deadline: s.now + opts.promoteTimeoutMs,
    oldPrimaryLsn: s.lastPrimaryLsn,
    oldTimeline: s.cluster.timeline,
  };
}

/** Live instances that have not yet applied the current state (and so may still hold sessions to a node it fences). */
export function unacknowledged(s: CoreState): string[] {
  const c = s.coordination;
  if (c === undefined) return [];
  return Object.entries(c.peers)
    .filter(([, p]) => p.appliedRevision < s.cluster.revision)
    .map(([name]) => name);
}

export function startPromotion(s: CoreState, out: FailoverAction[]): void {
  if (s.phase.kind !== 'failover') return;
  if (s.droppingSessions.includes(s.phase.oldPrimary)) {
    // This instance's own relay (every worker) has not confirmed yet that the old primary's sessions are gone.
    s.phase.step = 'acknowledging';
    return;
  }
  const waiting = unacknowledged(s);
  if (waiting.length > 0) {
    // Another instance may still hold sessions to the old primary: the new one takes no writes before they are gone.
    if (s.phase.step !== 'acknowledging') {
      s.phase.step = 'acknowledging';
      log(out, 'info', 'failover: waiting for every pgfloat instance to drop its sessions to the old primary', {
        epoch: s.cluster.epoch,
        oldPrimary: s.phase.oldPrimary,
        instances: waiting,
        revision: s.cluster.revision,
      });
    }
    return;
  }
  s.phase.step = 'promoting';
  s.phase.deadline = s.now + (s.phase.deadline - s.phase.startedAt);
  out.push({ type: 'promote', node: s.phase.target });
  const message = s.phase.planned ? 'switchover: the standby has replayed everything, promoting' : 'failover: old primary fenced, promoting';
  log(out, 'warn', message, { epoch: s.cluster.epoch, oldPrimary: s.phase.oldPrimary, target: s.phase.target });
}

/** Records how the running failover or switchover ended (the phase must still be the failover's). */
export function recordOutcome(s: CoreState, ok: boolean, message: string): void {
  if (s.phase.kind !== 'failover') return;
  const outcome: Outcome = { planned: s.phase.planned, ok, message, oldPrimary: s.phase.oldPrimary, target: s.phase.target, at: s.now };
  s.lastOutcome = outcome;
}

