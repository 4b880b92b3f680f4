// What a heartbeat learns about one node, and the health verdict built from consecutive heartbeats.

import type { HealthStatus, NodePositions } from '../cluster/node';
import type { TlsState } from '../postgres/connect';

/** What the heartbeat's connection negotiated, or why TLS kept it from connecting (error: which check failed). */
export interface ObservedTls {
  state: TlsState;
  error?: string;
}

export interface NodeObservation extends NodePositions {
  node: string;
  /** Wall-clock time the heartbeat finished (ms since epoch). */
  at: number;
  reachable: boolean;
  error?: string;
  latencyMs?: number;
  /** pg_stat_wal_receiver.status on a standby ('streaming', 'startup', ...), undefined when no receiver runs. */
  walReceiverStatus?: string;
  /** How long ago, by the standby's own clock, its WAL receiver last heard from the primary. */
  walReceiverAgeMs?: number;
  replayDelaySeconds?: number;
  tls?: ObservedTls;
}

export interface NodeHealth {
  node: string;
  status: HealthStatus;
  consecutiveFailures: number;
  /** The latest heartbeat, answered or not. */
  last?: NodeObservation;
  /** The latest answered heartbeat: its role and positions stay known while the node is suspect. */
  lastReachable?: NodeObservation;
}

export type NodeRole = 'primary' | 'standby' | 'unknown';

export function roleOf(health: NodeHealth): NodeRole {
  const seen = health.lastReachable;
  if (health.status === 'down' || health.status === 'unknown' || seen?.inRecovery === undefined) return 'unknown';
  return seen.inRecovery ? 'standby' : 'primary';
}
