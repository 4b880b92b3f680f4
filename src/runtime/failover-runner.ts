// Feeds the failover core with heartbeats and ticks, and carries out its actions in the order it gives them.

import type { Logger } from '../log';
import { initialState, step, writableNode } from '../failover/core';
import type { Coordination, CoreState, FailoverAction, FailoverEvent, FailoverOptions, NodeReport, OperatorCommand } from '../failover/types';
import type { NodeHealth } from '../monitor/observation';
import { SqlState } from '../protocol/codes';
import type { BackendNode } from '../proxy/session';
import type { SessionRegistry } from '../proxy/session-registry';
import type { Refusal, WriteGate } from '../routing/routes';
import type { Router } from '../routing/router';
import type { ClusterState, StateStore } from '../state/cluster-state';
import { NodeUnreachableError, type FencingOptions, type NodeAdmin } from './node-admin';

export interface FailoverRunnerDeps {
  options: FailoverOptions;
  fencing: FencingOptions;
  nodes: ReadonlyMap<string, BackendNode>;
  store: StateStore;
  router: Router;
  sessions: SessionRegistry;
  admin: NodeAdmin;
  log: Logger;
  /** Closes `node`'s sessions at transaction boundaries, cutting the rest after `drainMs` (switchover). */
  drainSessions(node: string, refusal: Refusal, drainMs: number): Promise<{ atBoundary: number; cut: number }>;
  /** Stops and starts nodes pgfloat manages (nodes[].dataDir or nodes[].commands); undefined for the others. */
  control(node: string): ManagedControl | undefined;
  /** Runs right after a promotion, before the core hears of it (synchronous replication is lifted here). */
  afterPromotion(node: BackendNode, synchronousStandbyNames: string): Promise<void>;
  /** Heartbeats a node now instead of at its next interval (a promotion to verify). */
  expedite(node: string): void;
  /** Called after every step, so routing and metrics follow the core. */
  onChange(core: CoreState): void;
  /** Every message the core logs, for the progress of a running operation. */
  onCoreLog(level: string, message: string): void;
  onFailoverFinished(result: 'success' | 'failure'): void;
}

export interface ManagedControl {
  stop(progress: (message: string) => void): Promise<void>;
  start(progress: (message: string) => void): Promise<void>;
}

const TICK_MS = 100;

export class FailoverRunner {
  private core: CoreState;
  private ticker: NodeJS.Timeout | undefined;
  private stopped = false;
  private inFlight: Promise<unknown> = Promise.resolve();

  /** `coordination` when several instances share the state: the core starts as a follower. */
  constructor(
    private readonly deps: FailoverRunnerDeps,
    cluster: ClusterState,
    coordination?: Coordination,
  ) {
    this.core = initialState([...deps.nodes.keys()], cluster, Date.now(), coordination);
  }

  get state(): CoreState {
    return this.core;
  }

  start(): void {
    // Ticks carry the clock for deadlines and retries; the core itself never reads time.
    this.ticker = setInterval(() => this.dispatch({ type: 'tick', at: Date.now() }), TICK_MS);
    this.ticker.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.ticker);
  }

  onHeartbeat(health: NodeHealth): void {
    this.dispatch({ type: 'report', at: Date.now(), report: toReport(health, this.deps.options.standbyConfirmationMs) });
  }

  onCoordination(coordination: Coordination): void {
    this.dispatch({ type: 'coordination', at: Date.now(), coordination });
  }

  /** A state another instance wrote (or this one, seen through the watch). */
  onClusterChanged(cluster: ClusterState): void {
    const before = this.core.cluster.primary;
    this.dispatch({ type: 'cluster-changed', at: Date.now(), cluster });
    const after = this.core.cluster.primary;
    // A follower routes to a new primary only once it has seen it out of recovery itself: look now, not at the next interval.
    if (after !== undefined && after !== before) this.deps.expedite(after);
  }

  operator(op: OperatorCommand): CoreState {
    this.dispatch({ type: 'operator', at: Date.now(), op });
    return this.core;
  }

  /** Resolves once no state write is pending, so a fresh start routes with its adopted primary. */
  async settled(): Promise<void> {
    while (this.core.persisting && !this.stopped) await this.inFlight;
  }

  /** What routing may do with writes now. */
  writeGate(): WriteGate {
    return { writable: writableNode(this.core), refusal: refusalFor(this.core) };
  }

  private dispatch(event: FailoverEvent): void {
    if (this.stopped) return;
    const before = this.core.phase;
    const { state, actions } = step(this.core, event, this.deps.options);
    this.core = state;
    for (const action of actions) this.execute(action);
    if (before.kind === 'failover' && state.phase.kind === 'steady') this.deps.onFailoverFinished('success');
    if (before.kind === 'failover' && state.phase.kind === 'failed') this.deps.onFailoverFinished('failure');
    this.deps.onChange(this.core);
  }

  private node(name: string): BackendNode {
    return this.deps.nodes.get(name)!;
  }

  /** Nodes shut down by the running switchover, so a rollback knows to start them again. */
  private readonly stoppedBySwitchover = new Set<string>();

  /**
   * A planned switchover's write stop: with fencing.action sql the node is made read-only and its
   * remaining client backends are terminated; a managed node whose fencing is a command is shut
   * down cleanly instead of running that command (a STONITH hook has no place in a drill); with
   * none, pgfloat's own sessions are already gone and new ones held. Resolves with the last WAL
   * position the standby must replay.
   */
  private async stopWrites(name: string, target: string): Promise<string> {
    const { admin, fencing } = this.deps;
    const node = this.node(name);
    const progress = (message: string): void => this.deps.onCoreLog('info', `switchover: ${message}`);
    const control = this.deps.control(name);
    if (fencing.action === 'command' && control !== undefined) {
      await control.stop(progress);
      this.stoppedBySwitchover.add(name);
      // A clean shutdown sends the standby everything up to the shutdown checkpoint before it ends.
      return admin.receivedLsn(this.node(target), fencing.timeoutMs);
    }
    if (fencing.action !== 'none') progress(await admin.fence(node, fencing));
    try {
      return await admin.finalLsn(node, fencing.timeoutMs);
    } catch (err) {
      // A fencing command may have taken the node down: then what the standby received is all there is.
      if (fencing.action !== 'command') throw err;
      return admin.receivedLsn(this.node(target), fencing.timeoutMs);
    }
  }

  private async resumeWrites(name: string): Promise<void> {
    const progress = (message: string): void => this.deps.onCoreLog('info', `switchover rollback: ${message}`);
    if (this.stoppedBySwitchover.delete(name)) await this.deps.control(name)!.start(progress);
    if (this.deps.fencing.action === 'sql') await this.deps.admin.resumeWrites(this.node(name), this.deps.fencing.timeoutMs);
  }

  private execute(action: FailoverAction): void {
    const { log, router, sessions } = this.deps;
    const epoch = this.core.cluster.epoch;
    switch (action.type) {
      case 'log':
        log[action.level]({ ...action.fields, epoch: action.fields.epoch ?? epoch }, action.message);
        this.deps.onCoreLog(action.level, action.message);
        return;
      case 'drain-sessions': {
        const refusal: Refusal = {
          reason: 'switchover',
          code: SqlState.adminShutdown,
          message: `terminating connection: the primary ${action.node} is switching over to another server; reconnect`,
        };
        this.deps.drainSessions(action.node, refusal, action.drainMs).then(
          ({ atBoundary, cut }) => this.dispatch({ type: 'drained', at: Date.now(), node: action.node, atBoundary, cut }),
          (err: Error) => {
            log.error({ node: action.node, err: err.message, epoch }, 'draining sessions failed; cutting them');
            const cut = sessions.dropNode(action.node, refusal);
            this.dispatch({ type: 'drained', at: Date.now(), node: action.node, atBoundary: 0, cut });
          },
        );
        return;
      }
      case 'stop-writes':
        this.stopWrites(action.node, action.target).then(
          (finalLsn) => this.dispatch({ type: 'writes-stopped', at: Date.now(), node: action.node, finalLsn }),
          (err: Error) => this.dispatch({ type: 'stop-writes-failed', at: Date.now(), node: action.node, error: err.message }),
        );
        return;
      case 'await-replay':
        this.deps.admin.awaitReplay(this.node(action.node), action.lsn, action.timeoutMs).then(
          () => this.dispatch({ type: 'caught-up', at: Date.now(), node: action.node, lsn: action.lsn }),
          (err: Error) => this.dispatch({ type: 'catch-up-failed', at: Date.now(), node: action.node, error: err.message }),
        );
        return;
      case 'resume-writes':
        this.resumeWrites(action.node).then(
          () => this.dispatch({ type: 'writes-resumed', at: Date.now(), node: action.node }),
          (err: Error) => this.dispatch({ type: 'writes-resumed', at: Date.now(), node: action.node, error: err.message }),
        );
        return;
      case 'hold-writes':
        router.hold(action.reason);
        return;
      case 'release-writes':
        router.release();
        return;
      case 'drop-sessions': {
        if (action.because === 'no-lease') {
          const dropped = sessions.dropNode(action.node, {
            reason: 'no-lease',
            code: SqlState.adminShutdown,
            message: 'terminating connection: this pgfloat instance is cut off from etcd and may no longer route writes; reconnect (another instance may serve you)',
          });
          log.error({ node: action.node, sessions: dropped, reason: action.reason, epoch }, 'dropped every client session on the primary: no etcd lease');
          return;
        }
        const dropped = sessions.dropNode(action.node, {
          reason: 'fenced',
          code: SqlState.adminShutdown,
          message: `terminating connection: ${action.node} is fenced (${action.reason})`,
        });
        log.warn({ node: action.node, sessions: dropped, reason: action.reason, epoch }, 'dropped every client session on the node');
        return;
      }
      case 'fence': {
        const node = this.deps.nodes.get(action.node)!;
        this.deps.admin.fence(node, this.deps.fencing).then(
          (done) => log.warn({ node: node.name, action: this.deps.fencing.action, result: done, epoch }, 'fencing action applied'),
          (err: Error) =>
            // An sql fencing of a node that is down has nothing to act on: expected in a failover, not an alarm.
            err instanceof NodeUnreachableError
              ? log.warn({ node: node.name, action: this.deps.fencing.action, err: err.message, epoch }, 'fencing action could not reach the node; it stays fenced at the proxy')
              : log.error({ node: node.name, action: this.deps.fencing.action, err: err.message, epoch }, 'fencing action failed; the node stays fenced at the proxy'),
        );
        return;
      }
      case 'promote': {
        const node = this.deps.nodes.get(action.node)!;
        this.deps.admin
          .promote(node, this.deps.options.promoteTimeoutMs)
          .then((names) =>
            // The node is a primary now whatever happens here; a failure only means commits may wait.
            this.deps.afterPromotion(node, names).catch((err: Error) => {
              log.error({ node: node.name, err: err.message, epoch }, 'after the promotion: could not check synchronous replication');
            }),
          )
          .then(
            () => {
              this.dispatch({ type: 'promoted', at: Date.now(), node: node.name });
              // Verification waits for a heartbeat that sees the new timeline: take it now.
              this.deps.expedite(node.name);
            },
            (err: Error) => this.dispatch({ type: 'promotion-failed', at: Date.now(), node: node.name, error: err.message }),
          );
        return;
      }
      case 'persist':
        this.inFlight = this.deps.store.compareAndSet(action.expectedRevision, action.cluster).then(
          async (written) => {
            if (written) return this.dispatch({ type: 'persisted', at: Date.now(), cluster: written });
            // Someone else wrote first: take their state, then let the core decide again.
            const current = await this.deps.store.load();
            this.dispatch({ type: 'persisted', at: Date.now(), cluster: current });
          },
          (err: Error) => this.dispatch({ type: 'persist-failed', at: Date.now(), error: err.message }),
        );
        return;
    }
  }
}

// ---- switchover I/O ---------------------------------------------------------------------------

function toReport(health: NodeHealth, confirmationMs: number): NodeReport {
  const seen = health.lastReachable;
  return {
    node: health.node,
    status: health.status,
    inRecovery: seen?.inRecovery,
    systemIdentifier: seen?.systemIdentifier,
    timeline: seen?.timeline,
    currentLsn: seen?.currentLsn,
    receiveLsn: seen?.receiveLsn,
    replayLsn: seen?.replayLsn,
    seesPrimary:
      seen?.inRecovery === true
        ? seen.walReceiverStatus === 'streaming' && seen.walReceiverAgeMs !== undefined && seen.walReceiverAgeMs < confirmationMs
        : undefined,
  };
}

/** Why read-write clients are refused, in the words a client will read. */
function refusalFor(core: CoreState): Refusal | undefined {
  const phase = core.phase;
  const base = { code: SqlState.cannotConnectNow };
  if (core.coordination?.connected === false) {
    return {
      ...base,
      reason: 'no-lease',
      message: 'no verified primary available: this pgfloat instance is cut off from etcd',
      detail: `${core.coordination.disconnectedReason ?? 'no etcd lease'}; another pgfloat instance may be serving writes`,
    };
  }
  switch (phase.kind) {
    case 'bootstrap':
      return { ...base, reason: 'no-primary', message: 'no verified primary available', detail: 'waiting to see every node before adopting a primary' };
    case 'split-brain':
      return {
        ...base,
        reason: 'split-brain',
        message: 'no verified primary available: more than one node claims to be primary',
        detail: `nodes claiming primary: ${phase.claimants.join(', ')}; an operator must run pgfloat adopt NODE`,
      };
    case 'failover':
      return {
        ...base,
        reason: 'failover-in-progress',
        message: `no verified primary available: ${phase.planned ? 'switchover' : 'failover'} in progress`,
        detail: `from ${phase.oldPrimary} to ${phase.target} (${phase.reason}), step ${phase.step}`,
      };
    case 'failed':
      return { ...base, reason: 'failover-failed', message: 'no verified primary available: failover failed', detail: phase.reason };
    case 'steady':
      if (core.cluster.primary !== undefined && core.cluster.fenced.includes(core.cluster.primary)) {
        return { ...base, reason: 'no-primary', message: 'no verified primary available: the primary is fenced', detail: core.blocked };
      }
      return core.blocked === undefined
        ? undefined
        : { ...base, reason: 'no-primary', message: 'no verified primary available', detail: core.blocked };
  }
}
