// The failover core's word on writes, and the only one: the node read-write clients may reach now, or why none may.

import { SqlState } from '../protocol/codes';
import type { Refusal } from '../protocol/refusal';
import { coordinationAllowsWrites } from './coordination';
import { sameSystem } from './helpers';
import type { CoreState, FailoverOptions, NodeReport } from './types';

export interface WriteGate {
  /** The only node read-write clients may reach; undefined while none may. */
  node: string | undefined;
  /** Set while new read-write clients wait (up to failover.holdMs) instead of being refused: why. */
  heldBecause: string | undefined;
  /** What a read-write client is told when no node may take it, also once a hold runs out. */
  refusal: Refusal | undefined;
  /** Unfenced nodes of this cluster that answered recently and run out of recovery: more than one is split brain. */
  claimants: string[];
}

/**
 * Automatic failover (failover.enabled): the state's primary at the current epoch, not fenced,
 * answering heartbeats, out of recovery, of the cluster's system, with no other node claiming
 * primary, while nothing holds writes. Routing only (failover.enabled false): the single node
 * out of recovery, if the state names none or names it. Nothing else is ever routable for
 * writes, which is what makes "at most one writable node" hold.
 */
export function writeGate(s: CoreState, options: Pick<FailoverOptions, 'automatic'>): WriteGate {
  const claimants = primaryClaimants(s);
  const refusal = options.automatic ? automaticRefusal(s, claimants) : routingOnlyRefusal(s, claimants);
  if (refusal !== undefined) return { node: undefined, heldBecause: s.heldBecause, refusal, claimants };
  return { node: options.automatic ? s.cluster.primary : claimants[0], heldBecause: undefined, refusal: undefined, claimants };
}

export function writableNode(s: CoreState, options: Pick<FailoverOptions, 'automatic'>): string | undefined {
  return writeGate(s, options).node;
}

/** A suspect node keeps its role until declared down: one slow heartbeat is not an outage. */
function recentlyReachable(r: NodeReport | undefined): r is NodeReport {
  return (r?.status === 'up' || r?.status === 'suspect') && r.inRecovery !== undefined;
}

function primaryClaimants(s: CoreState): string[] {
  return s.names.filter((n) => {
    const r = s.nodes[n];
    return recentlyReachable(r) && r.inRecovery === false && !s.cluster.fenced.includes(n) && sameSystem(s, r);
  });
}

const noPrimary = (detail: string | undefined, message = 'no verified primary available'): Refusal => ({
  reason: 'no-primary',
  code: SqlState.cannotConnectNow,
  message,
  detail,
});

const splitBrain = (claimants: readonly string[], advice = ''): Refusal => ({
  reason: 'split-brain',
  code: SqlState.cannotConnectNow,
  message: 'no verified primary available: more than one node claims to be primary',
  detail: `nodes claiming primary: ${claimants.join(', ')}${advice}`,
});

/** Why read-write clients may not reach the primary now, in the words a client will read; undefined when they may. */
function automaticRefusal(s: CoreState, claimants: readonly string[]): Refusal | undefined {
  const phase = s.phase;
  if (!coordinationAllowsWrites(s)) {
    return {
      reason: 'no-lease',
      code: SqlState.cannotConnectNow,
      message: 'no verified primary available: this pgfloat instance is cut off from etcd',
      detail: `${s.coordination?.disconnectedReason ?? 'no etcd lease'}; another pgfloat instance may be serving writes`,
    };
  }
  switch (phase.kind) {
    case 'bootstrap':
      return noPrimary('waiting to see every node before adopting a primary');
    case 'split-brain':
      return splitBrain(phase.claimants, '; an operator must run pgfloat adopt NODE');
    case 'failover':
      return {
        reason: 'failover-in-progress',
        code: SqlState.cannotConnectNow,
        message: `no verified primary available: ${phase.planned ? 'switchover' : 'failover'} in progress`,
        detail: `from ${phase.oldPrimary} to ${phase.target} (${phase.reason}), step ${phase.step}`,
      };
    case 'failed':
      return { reason: 'failover-failed', code: SqlState.cannotConnectNow, message: 'no verified primary available: failover failed', detail: phase.reason };
    case 'steady':
      return steadyRefusal(s, claimants);
  }
}

function steadyRefusal(s: CoreState, claimants: readonly string[]): Refusal | undefined {
  const primary = s.cluster.primary;
  if (primary === undefined) return noPrimary('no primary recorded yet');
  if (s.cluster.fenced.includes(primary)) return noPrimary(s.blocked, 'no verified primary available: the primary is fenced');
  if (s.blocked !== undefined) return noPrimary(s.blocked);
  // The core fences a second primary as soon as it sees one; until that is recorded, neither is routed.
  if (claimants.some((n) => n !== primary)) return splitBrain(claimants);
  const r = s.nodes[primary];
  if (s.heldBecause !== undefined) return noPrimary(`read-write clients were held (${s.heldBecause}) and the primary ${primary} did not come back`);
  if (r === undefined || r.status !== 'up') return noPrimary(`the primary ${primary} is ${r?.status ?? 'not yet seen'}`);
  if (r.inRecovery !== false) return noPrimary(`the primary ${primary} runs in recovery`);
  if (!sameSystem(s, r)) return noPrimary(`${primary} answers with another system identifier (${r.systemIdentifier ?? 'unknown'}) than the cluster's`);
  return undefined;
}

/** Routing only: the heartbeats decide, as keepalived with a health check would, within what the state records. */
function routingOnlyRefusal(s: CoreState, claimants: readonly string[]): Refusal | undefined {
  const named = s.cluster.primary;
  if (claimants.length === 1 && (named === undefined || named === claimants[0])) return undefined;
  if (claimants.length > 1) return splitBrain(claimants);
  return noPrimary(claimants.length === 1 ? `node ${claimants[0]} claims primary but the cluster state names ${named}` : 'no reachable node is out of recovery');
}
