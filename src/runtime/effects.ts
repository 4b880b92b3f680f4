// The small interfaces the failover runner acts through: real implementations in production, fakes in its unit tests.

import type { LiftedSynchronous } from '../cluster/state';
import type { CoreState, FailoverOptions } from '../failover/types';
import type { Logger } from '../log';
import type { Refusal } from '../protocol/refusal';
import type { StateStore } from '../state/store';

/** applied; unreachable: an `sql` fencing found no server to act on; failed: anything else. */
export type FencingResult = 'applied' | 'unreachable' | 'failed';

/** Time for the runner: event timestamps and the tick that carries deadlines and retries into the core. */
export interface Clock {
  now(): number;
  every(ms: number, tick: () => void): { stop(): void };
}

export const systemClock: Clock = {
  now: () => Date.now(),
  every(ms, tick) {
    const timer = setInterval(tick, ms);
    // Ticks must not keep a stopping process alive.
    timer.unref();
    return { stop: () => clearInterval(timer) };
  },
};

/** What the runner does to this instance's client sessions, in every relay event loop it has. */
export interface SessionEffects {
  /**
   * Ends every session on `node` now; resolves with how many there were once every event loop
   * has done so (a worker that cannot confirm is killed, which ends its sessions too). Never rejects.
   */
  dropNode(node: string, refusal: Refusal): Promise<number>;
  /** Closes `node`'s sessions at transaction boundaries, cutting the rest after `drainMs`. */
  drainNode(node: string, refusal: Refusal, drainMs: number): Promise<{ atBoundary: number; cut: number }>;
}

export type Progress = (message: string) => void;

/** What the runner does to the servers, by node name. */
export interface ServerEffects {
  /** Applies fencing.action; resolves to what was done. Rejects with NodeUnreachableError when there was no server to act on. */
  fence(node: string): Promise<string>;
  /** Resolves once the node left recovery, with the synchronous_standby_names it had. */
  promote(node: string): Promise<string>;
  /** Switchover: the old primary takes no more writes; resolves with the last WAL position the target must replay. */
  stopWrites(node: string, target: string, progress: Progress): Promise<string>;
  /** Switchover rollback: undoes stopWrites. */
  resumeWrites(node: string, progress: Progress): Promise<void>;
  awaitReplay(node: string, lsn: string, timeoutMs: number): Promise<void>;
  /**
   * Right after a promotion, before the node takes writes: keeps it writable under synchronous
   * replication. Resolves with the record of a lifted synchronous_standby_names the cluster keeps.
   */
  afterPromotion(node: string, synchronousStandbyNames: string, current: LiftedSynchronous | undefined): Promise<LiftedSynchronous | undefined>;
  /** Heartbeats the node now instead of at its next interval. */
  expedite(node: string): void;
}

/** Everything the failover runner is given: the core's options, its effects, and where its decisions go. */
export interface FailoverRunnerDeps {
  options: FailoverOptions;
  /** Every configured node, in configuration order. */
  names: readonly string[];
  clock: Clock;
  store: StateStore;
  sessions: SessionEffects;
  servers: ServerEffects;
  log: Logger;
  /**
   * Called after every step, BEFORE its actions run: the routing decision follows the new state
   * first, so a session its actions drop or drain reconnects into the new gate (held, or routed
   * anew), never to the node being left.
   */
  route(core: CoreState): void;
  /**
   * Called after every step, once its actions ran: the sessions to any node it fenced are gone by
   * then, which is what an applied revision tells the other instances.
   */
  stepped(core: CoreState, previous: CoreState): void;
  /** How each fencing action ended: counted for alerts (a STONITH that fails is worth a page). */
  fenced(node: string, result: FencingResult): void;
  /** Every message the core logs, for the progress of a running operation. */
  progress(level: string, message: string): void;
}
