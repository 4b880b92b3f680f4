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
  history: FailoverRecord[];
}

export function emptyState(): ClusterState {
  return { revision: 0, epoch: 0, fenced: [], history: [] };
}

export interface StateStore {
  load(): Promise<ClusterState>;
  /**
   * Writes `next` only if the stored revision still equals `expectedRevision`; the written
   * state gets revision expectedRevision + 1. Resolves false when someone else wrote first.
   */
  compareAndSet(expectedRevision: number, next: Omit<ClusterState, 'revision'>): Promise<ClusterState | undefined>;
}
