// What a heartbeat learns about one node, and the health verdict built from consecutive heartbeats.

export interface NodeObservation {
  node: string;
  /** Wall-clock time the heartbeat finished (ms since epoch). */
  at: number;
  reachable: boolean;
  error?: string;
  latencyMs?: number;
  inRecovery?: boolean;
  systemIdentifier?: string;
  timeline?: number;
  /** pg_current_wal_lsn() on a primary. */
  currentLsn?: string;
  receiveLsn?: string;
  replayLsn?: string;
  /** pg_stat_wal_receiver.status on a standby ('streaming', 'startup', ...), undefined when no receiver runs. */
  walReceiverStatus?: string;
  /** How long ago, by the standby's own clock, its WAL receiver last heard from the primary. */
  walReceiverAgeMs?: number;
  replayDelaySeconds?: number;
}

/** up: last heartbeat answered; suspect: missed some; down: missed failuresBeforeDown in a row. */
export type HealthStatus = 'unknown' | 'up' | 'suspect' | 'down';

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

/** LSNs are "XXXXXXXX/XXXXXXXX": the high and low 32 bits in hex. */
export function lsnToBigInt(lsn: string): bigint {
  const slash = lsn.indexOf('/');
  if (slash === -1) throw new Error(`invalid LSN "${lsn}"`);
  return (BigInt(`0x${lsn.slice(0, slash)}`) << 32n) | BigInt(`0x${lsn.slice(slash + 1)}`);
}

/** Bytes `behind` trails `ahead`, never negative; undefined when either position is unknown. */
export function lagBytes(ahead: string | undefined, behind: string | undefined): number | undefined {
  if (ahead === undefined || behind === undefined) return undefined;
  const diff = lsnToBigInt(ahead) - lsnToBigInt(behind);
  return diff > 0n ? Number(diff) : 0;
}
