// What a cluster-state store offers the failover runtime: read the state, and compare-and-set it.

import type { ClusterState } from '../cluster/state';

export interface StateStore {
  load(): Promise<ClusterState>;
  /**
   * Writes `next` only if the stored revision still equals `expectedRevision`; the written
   * state gets revision expectedRevision + 1. Resolves false when someone else wrote first.
   */
  compareAndSet(expectedRevision: number, next: Omit<ClusterState, 'revision'>): Promise<ClusterState | undefined>;
}
