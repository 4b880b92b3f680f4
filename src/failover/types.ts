// The failover decision core's vocabulary: what it is told (events), what it decides (actions), what it remembers.

import type { HealthStatus } from '../monitor/observation';
import type { ClusterState } from '../state/cluster-state';

/** One node as the monitor last saw it, reduced to what decisions need. */
export interface NodeReport {
  node: string;
  status: HealthStatus;
  inRecovery?: boolean;
  systemIdentifier?: string;
  timeline?: number;
  /** pg_current_wal_lsn() on a primary. */
  currentLsn?: string;
  /** pg_last_wal_receive_lsn() on a standby: WAL it holds and will replay when promoted. */
  receiveLsn?: string;
  /** The standby's WAL receiver got data or a keepalive from the primary recently (the witness). */
  seesPrimary?: boolean;
}

export type OperatorCommand =
  | { command: 'failover'; to?: string; allowDataLoss: boolean }
  | { command: 'adopt'; node: string }
  | { command: 'fence'; node: string }
  | { command: 'unfence'; node: string };

export type FailoverEvent =
  | { type: 'report'; at: number; report: NodeReport }
  | { type: 'tick'; at: number }
  | { type: 'promoted'; at: number; node: string }
  | { type: 'promotion-failed'; at: number; node: string; error: string }
  | { type: 'persisted'; at: number; cluster: ClusterState }
  | { type: 'persist-failed'; at: number; error: string }
  | { type: 'operator'; at: number; op: OperatorCommand };

export type LogLevel = 'info' | 'warn' | 'error';

export type FailoverAction =
  /** New read-write clients wait instead of being refused. */
  | { type: 'hold-writes'; reason: string }
  /** Held and new read-write clients go where routing says (the verified primary, or a refusal). */
  | { type: 'release-writes' }
  | { type: 'drop-sessions'; node: string; reason: string }
  /** Apply fencing.action to the node, if it can be reached. */
  | { type: 'fence'; node: string; reason: string }
  | { type: 'promote'; node: string }
  /** Compare-and-set the store at `expectedRevision`; the answer comes back as persisted/persist-failed. */
  | { type: 'persist'; expectedRevision: number; cluster: Omit<ClusterState, 'revision'> }
  | { type: 'log'; level: LogLevel; message: string; fields: Record<string, unknown> };

export type FailoverStep = 'fencing' | 'promoting' | 'verifying' | 'persisting';

export type Phase =
  /** No primary recorded yet: adopt the only node out of recovery once every node has been seen. */
  | { kind: 'bootstrap' }
  /** First start with several primaries and no state to choose: only an operator's adopt decides. */
  | { kind: 'split-brain'; claimants: string[] }
  | { kind: 'steady' }
  | {
      kind: 'failover';
      step: FailoverStep;
      oldPrimary: string;
      target: string;
      reason: string;
      startedAt: number;
      /** Promotion and its verification must finish by then. */
      deadline: number;
      oldPrimaryLsn?: string;
      oldTimeline?: number;
    }
  /** A failover failed; writes stay refused until a retry at `retryAt` succeeds. */
  | { kind: 'failed'; reason: string; retryAt: number };

export interface FailoverOptions {
  /** Do not promote while the standby still hears from the primary. */
  requireStandbyConfirmation: boolean;
  /** Refuse to promote a standby further behind the primary's last seen position than this. */
  maxLagBytes: number;
  promoteTimeoutMs: number;
  retryIntervalMs: number;
}

export interface CoreState {
  /** The cluster state as last persisted: the only source of the primary and the epoch. */
  cluster: ClusterState;
  nodes: Record<string, NodeReport>;
  /** Names of every configured node, in configuration order. */
  names: string[];
  /** The primary's WAL position the last time it answered: the reference for data loss. */
  lastPrimaryLsn?: string;
  phase: Phase;
  writesHeld: boolean;
  /** A persist is in flight; nothing else is persisted until its answer. */
  persisting: boolean;
  /** Why a needed failover is not happening (lag, witness, no candidate); shown in status. */
  blocked?: string;
  /** Fenced nodes seen running as primaries: an alert. */
  roguePrimaries: string[];
  /** When the fencing action was last applied to each rogue primary (it is repeated while it stays one). */
  rogueFencedAt: Record<string, number>;
  /** The answer to the operator command of this step, if there was one. */
  operatorAnswer?: { accepted: boolean; message: string };
  /** Since when the cluster runs on one server (a failover happened and nobody rejoined yet). */
  degenerateSince?: number;
  now: number;
}

export interface StepResult {
  state: CoreState;
  actions: FailoverAction[];
}
