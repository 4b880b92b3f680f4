// The persisted cluster state: which node is primary at which epoch, and which nodes are fenced.

export interface FailoverRecord {
  at: string;
  epoch: number;
  reason: string;
  oldPrimary?: string;
  newPrimary: string;
  oldPrimaryLsn?: string;
  newPrimaryLsn?: string;
}

/** synchronous_standby_names lifted on a new primary that had no standby yet; put back once one streams. */
export interface LiftedSynchronous {
  node: string;
  names: string;
  /** The configuration file it came from, so restoring can fall back to it; null for postgresql.auto.conf. */
  sourceFile: string | null;
  since: string;
}

export interface ClusterState {
  /** Bumped on every write; the store's compare-and-set checks it. */
  revision: number;
  /** Grows by one at every promotion; a primary is only trusted for the current epoch. */
  epoch: number;
  systemIdentifier?: string;
  primary?: string;
  timeline?: number;
  fenced: string[];
  /** The primary's WAL position as last seen when this state was written: bounds data loss after a restart. */
  lastKnownPrimaryLsn?: string;
  /** Fenced by an operator: stays fenced until an operator unfences it, even once it streams again. */
  operatorFenced?: string[];
  /** Kept in the shared state, so whichever instance decides next knows to restore it. */
  synchronousLifted?: LiftedSynchronous;
  history: FailoverRecord[];
  /**
   * A switchover draining `from`, announced by the decider (several instances) so the others hold
   * new writers and move their own sessions at transaction boundaries until `drainUntil`; removed
   * with the fence that follows, or by the rollback.
   */
  switchover?: AnnouncedSwitchover;
}

export interface AnnouncedSwitchover {
  from: string;
  to: string;
  /** ISO time: the followers' drain deadline. */
  drainUntil: string;
}

export function emptyState(): ClusterState {
  return { revision: 0, epoch: 0, fenced: [], history: [] };
}
