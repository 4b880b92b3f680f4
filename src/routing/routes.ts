// Where clients may go, computed from node health and the persisted cluster state: a pure function.

import { lagBytes, type NodeHealth, type NodeObservation } from '../monitor/observation';
import type { ClusterState } from '../state/cluster-state';
import { SqlState, type SqlStateCode } from '../protocol/codes';

export type ListenerKind = 'readWrite' | 'readOnly';

export type RefusalReason =
  | 'no-primary'
  | 'failover-in-progress'
  | 'failover-failed'
  /** Several instances: this one lost its etcd lease. */
  | 'no-lease'
  | 'fenced'
  | 'split-brain'
  | 'no-standby'
  | 'backend-unreachable'
  | 'too-many-connections'
  | 'startup-timeout'
  | 'protocol-violation'
  | 'unsupported-protocol'
  | 'shutting-down'
  | 'switchover';

export interface Refusal {
  reason: RefusalReason;
  code: SqlStateCode;
  message: string;
  detail?: string;
}

export interface Routes {
  /** The verified primary: the only node read-write clients may reach. */
  primary: string | undefined;
  /** Healthy standbys, in node order, that read-only clients may reach. */
  standbys: string[];
  /** Set when read-write clients must be refused, saying why. */
  readWriteRefusal: Refusal | undefined;
  /** Every unfenced node that currently claims to be a primary (more than one: split brain). */
  claimants: string[];
}

export interface RouteOptions {
  maxLagBytes: number | null;
}

/**
 * The failover core's word on writes: only `writable` may take them, and `refusal` says why
 * nothing may. Routing intersects it with what the heartbeats show, so both must agree.
 */
export interface WriteGate {
  writable: string | undefined;
  refusal: Refusal | undefined;
}

export function computeRoutes(health: readonly NodeHealth[], state: ClusterState, options: RouteOptions, gate?: WriteGate): Routes {
  const fenced = new Set(state.fenced);
  const live = health.filter((h) => !fenced.has(h.node) && isRecentlyReachable(h));
  const seen = (h: NodeHealth): NodeObservation => h.lastReachable!;
  const sameCluster = (h: NodeHealth): boolean =>
    state.systemIdentifier === undefined || seen(h).systemIdentifier === state.systemIdentifier;

  const claimants = live.filter((h) => seen(h).inRecovery === false && sameCluster(h));
  let primary: NodeHealth | undefined;
  let readWriteRefusal: Refusal | undefined;
  if (claimants.length === 1 && (state.primary === undefined || state.primary === claimants[0]!.node)) {
    primary = claimants[0];
  } else if (claimants.length > 1) {
    readWriteRefusal = {
      reason: 'split-brain',
      code: SqlState.cannotConnectNow,
      message: 'no verified primary available: more than one node claims to be primary',
      detail: `nodes claiming primary: ${claimants.map((h) => h.node).join(', ')}`,
    };
  } else {
    readWriteRefusal = {
      reason: 'no-primary',
      code: SqlState.cannotConnectNow,
      message: 'no verified primary available',
      detail:
        claimants.length === 1
          ? `node ${claimants[0]!.node} claims primary but the cluster state names ${state.primary}`
          : 'no reachable node is out of recovery',
    };
  }

  if (gate !== undefined && primary !== undefined && primary.node !== gate.writable) {
    primary = undefined;
    readWriteRefusal = gate.refusal ?? {
      reason: 'no-primary',
      code: SqlState.cannotConnectNow,
      message: 'no verified primary available',
      detail: 'the failover core has not verified a primary',
    };
  } else if (gate?.refusal !== undefined && primary === undefined) {
    readWriteRefusal = gate.refusal;
  }

  const primarySeen = primary ? seen(primary) : undefined;
  const standbys = live
    .filter((h) => seen(h).inRecovery === true)
    .filter((h) => primarySeen === undefined || seen(h).systemIdentifier === primarySeen.systemIdentifier)
    .filter((h) => sameCluster(h))
    .filter((h) => withinLag(seen(h), primarySeen, options.maxLagBytes))
    .map((h) => h.node);

  return {
    primary: primary?.node,
    standbys,
    readWriteRefusal,
    claimants: claimants.map((h) => h.node),
  };
}

/** Suspect nodes keep their role until declared down: one slow heartbeat is not an outage. */
function isRecentlyReachable(h: NodeHealth): boolean {
  return (h.status === 'up' || h.status === 'suspect') && h.lastReachable !== undefined;
}

function withinLag(standby: NodeObservation, primary: NodeObservation | undefined, maxLagBytes: number | null): boolean {
  if (maxLagBytes === null) return true;
  const lag = primary?.currentLsn !== undefined
    ? lagBytes(primary.currentLsn, standby.replayLsn)
    : lagBytes(standby.receiveLsn, standby.replayLsn);
  return lag !== undefined && lag <= maxLagBytes;
}

export function sameRoutes(a: Routes, b: Routes): boolean {
  return (
    a.primary === b.primary &&
    a.standbys.join() === b.standbys.join() &&
    a.claimants.join() === b.claimants.join() &&
    a.readWriteRefusal?.reason === b.readWriteRefusal?.reason
  );
}
