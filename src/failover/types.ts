// The failover decision core's vocabulary: what it is told (events), what it decides (actions), what it remembers.

import type { ClusterState, LiftedSynchronous } from '../cluster/state';
import type { HealthStatus, NodePositions } from '../cluster/node';

/** One node as the monitor last saw it, reduced to what decisions need. */
export interface NodeReport extends NodePositions {
  node: string;
  status: HealthStatus;
  /** The standby's WAL receiver got data or a keepalive from the primary recently (the witness). */
  seesPrimary?: boolean;
}

export type OperatorCommand =
  | { command: 'failover'; to?: string; allowDataLoss: boolean }
  | { command: 'adopt'; node: string }
  | { command: 'fence'; node: string }
  | { command: 'unfence'; node: string }
  /**
   * A planned role change. `logicalSlots` names the primary's logical replication slots that
   * would not survive it (found by the runtime before asking; the core cannot query servers).
   */
  | { command: 'switchover'; to?: string; force: boolean; logicalSlots: string[] };

/** What another pgfloat instance publishes through the shared store (etcd). */
export interface PeerView {
  /** How that instance's monitor sees each node. */
  view: Record<string, HealthStatus>;
  /** The newest cluster-state revision it has applied: it holds no session to a node fenced there. */
  appliedRevision: number;
}

/** This instance among several that share the cluster state (state.store etcd). */
export interface Coordination {
  /** It holds the election: only it decides failovers and writes the state. */
  decider: boolean;
  /** The instance that decides, when one is known. */
  deciderName?: string;
  /** Its own lease is valid. Without it the others may act without hearing from it, so it routes no writes. */
  connected: boolean;
  /** Why it is not connected, in words for clients and status. */
  disconnectedReason?: string;
  /** The other live instances (their leases are valid), by name. */
  peers: Record<string, PeerView>;
}

export type FailoverEvent =
  | { type: 'report'; at: number; report: NodeReport }
  /** Election, lease and peers changed (several instances only). */
  | { type: 'coordination'; at: number; coordination: Coordination }
  /** The shared store holds a newer cluster state than this instance's (another instance wrote it). */
  | { type: 'cluster-changed'; at: number; cluster: ClusterState }
  | { type: 'tick'; at: number }
  /** `synchronousLifted`: the record the cluster should keep once the node is the primary (see SynchronousGuard). */
  | { type: 'promoted'; at: number; node: string; synchronousLifted?: LiftedSynchronous }
  /** The primary's synchronous_standby_names is set again (restored by pgfloat, or by an operator): the record goes. */
  | { type: 'synchronous-restored'; at: number; node: string }
  | { type: 'promotion-failed'; at: number; node: string; error: string }
  | { type: 'persisted'; at: number; cluster: ClusterState }
  | { type: 'persist-failed'; at: number; error: string }
  | { type: 'operator'; at: number; op: OperatorCommand }
  /**
   * Every relay event loop of this instance ended its sessions to `node` (a drop-sessions
   * action's answer): until then a promotion waits, and the instance does not claim to have
   * applied the state.
   */
  | { type: 'sessions-dropped'; at: number; node: string; sessions: number }
  /** Switchover: the old primary's sessions are gone (closed at a boundary, or cut at the deadline). */
  | { type: 'drained'; at: number; node: string; atBoundary: number; cut: number }
  /** Switchover: the old primary takes no more writes; `finalLsn` is the last position it wrote. */
  | { type: 'writes-stopped'; at: number; node: string; finalLsn: string }
  | { type: 'stop-writes-failed'; at: number; node: string; error: string }
  /** Switchover: the target replayed everything up to the old primary's final position. */
  | { type: 'caught-up'; at: number; node: string; lsn: string }
  | { type: 'catch-up-failed'; at: number; node: string; error: string }
  /** Switchover rollback: the old primary takes writes again (or could not be made to). */
  | { type: 'writes-resumed'; at: number; node: string; error?: string };

export type LogLevel = 'info' | 'warn' | 'error';

/**
 * What the core asks the runtime to do, in order. Whether read-write clients are held is not an
 * action but state (`heldBecause`, published through the write gate before the actions run).
 */
export type FailoverAction =
  /** End this instance's client sessions on the node: it is fenced, or this instance lost its lease (several instances). */
  | { type: 'drop-sessions'; node: string; reason: string; because: 'fenced' | 'no-lease' }
  /** Apply fencing.action to the node, if it can be reached. */
  | { type: 'fence'; node: string; reason: string }
  | { type: 'promote'; node: string }
  /** Switchover: close the node's sessions at transaction boundaries, cutting the rest after `drainMs`. */
  | { type: 'drain-sessions'; node: string; drainMs: number }
  /** Switchover: make the old primary stop taking writes (a local stop where managed, else fencing) and report its final LSN. */
  | { type: 'stop-writes'; node: string; target: string }
  /** Switchover: wait until `node` has replayed up to `lsn`. */
  | { type: 'await-replay'; node: string; lsn: string; timeoutMs: number }
  /** Switchover rollback: undo stop-writes on the old primary. */
  | { type: 'resume-writes'; node: string }
  /** Compare-and-set the store at `expectedRevision`; the answer comes back as persisted/persist-failed. */
  | { type: 'persist'; expectedRevision: number; cluster: Omit<ClusterState, 'revision'> }
  | { type: 'log'; level: LogLevel; message: string; fields: Record<string, unknown> };

/** A planned switchover goes (announcing →) draining → fencing → stopping-writes → catching-up before promoting; a failover starts at fencing. */
export type FailoverStep =
  /** Several instances: the switchover is being written to the shared state, so the others drain too. */
  | 'announcing'
  | 'draining'
  | 'fencing'
  | 'stopping-writes'
  | 'catching-up'
  /** Waiting until this instance's relay, and every other live instance, has dropped its sessions to the old primary. */
  | 'acknowledging'
  | 'promoting'
  | 'verifying'
  | 'persisting'
  /** Switchover only: something failed before promotion, so the old primary is given its writes back. */
  | 'rolling-back';

export type Phase =
  /** No primary recorded yet: adopt the only node out of recovery once every node has been seen. */
  | { kind: 'bootstrap' }
  /** First start with several primaries and no state to choose: only an operator's adopt decides. */
  | { kind: 'split-brain'; claimants: string[] }
  | { kind: 'steady' }
  | {
      kind: 'failover';
      /** A switchover asked for by an operator (true), or a failover (false). */
      planned: boolean;
      step: FailoverStep;
      oldPrimary: string;
      target: string;
      reason: string;
      startedAt: number;
      /** Promotion and its verification must finish by then. */
      deadline: number;
      oldPrimaryLsn?: string;
      oldTimeline?: number;
      /** Switchover rollback: why. */
      rollbackReason?: string;
      /** Switchover: this instance's drain result once it came, and until when other instances are waited for. */
      drained?: { atBoundary: number; cut: number };
      drainDeadline?: number;
      /**
       * From the promotion's answer, recorded with the new primary: the lifted
       * synchronous_standby_names, null for none; undefined while unanswered (the record stands).
       */
      synchronousLifted?: LiftedSynchronous | null;
    }
  /** A failover failed; writes stay refused until a retry at `retryAt` succeeds. */
  | { kind: 'failed'; reason: string; retryAt: number };

export interface FailoverOptions {
  /** Do not promote while the standby still hears from the primary. */
  requireStandbyConfirmation: boolean;
  /** How recent the standby's last message from the primary must be to count as hearing it. */
  standbyConfirmationMs: number;
  /** Refuse to promote a standby further behind the primary's last seen position than this. */
  maxLagBytes: number;
  promoteTimeoutMs: number;
  retryIntervalMs: number;
  /**
   * failover.enabled. When false the core only judges, from the heartbeats, which node may take
   * writes (the single node out of recovery, as a VIP with a health check would): it never
   * persists, holds, fences or promotes.
   */
  automatic: boolean;
  /** Reporting servers (nodes[].promotable: false): never promoted, by failover or switchover. */
  notPromotable: readonly string[];
  switchover: {
    drainMs: number;
    maxLagBytes: number;
    catchUpTimeoutMs: number;
  };
}

/** How the last failover or switchover ended: for status, and for the operation that asked for it. */
export interface Outcome {
  planned: boolean;
  ok: boolean;
  message: string;
  oldPrimary: string;
  target: string;
  at: number;
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
  /** Set while new read-write clients wait rather than being refused: why. */
  heldBecause?: string;
  /** A persist is in flight; nothing else is persisted until its answer. */
  persisting: boolean;
  /** Why a needed failover is not happening (lag, witness, no candidate); shown in status. */
  blocked?: string;
  /** When the recorded primary was first seen down, until it answers again. */
  primaryDownSince?: number;
  /** Fenced nodes seen running as primaries: an alert. */
  roguePrimaries: string[];
  /**
   * Old primaries a switchover fenced while they ran (read-only): not rogue, only waiting to be
   * rejoined. A node leaves the list once it is seen down or in recovery.
   */
  demoted: string[];
  /** When the fencing action was last applied to each rogue primary (it is repeated while it stays one). */
  rogueFencedAt: Record<string, number>;
  /** The answer to the operator command of this step, if there was one. */
  operatorAnswer?: { accepted: boolean; message: string };
  /** Since when the cluster runs on one server (a failover happened and nobody rejoined yet). */
  degenerateSince?: number;
  lastOutcome?: Outcome;
  /** Present when several instances share the state; absent for a single instance. */
  coordination?: Coordination;
  /** Nodes with a drop-sessions action not yet answered by sessions-dropped (one entry per action). */
  droppingSessions: string[];
  /**
   * The newest cluster revision this instance has fully applied: no drop of sessions it asked
   * for is outstanding. It is what the other instances wait for before a promotion.
   */
  appliedRevision: number;
  now: number;
}

export interface StepResult {
  state: CoreState;
  actions: FailoverAction[];
}
