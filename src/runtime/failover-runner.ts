// Feeds the failover core (heartbeats, coordination, ticks, answers) and carries out its actions in the order it gives them.

import type { ClusterState } from '../cluster/state';
import { initialState, step } from '../failover/core';
import type { Coordination, CoreState, FailoverAction, FailoverEvent, NodeReport, OperatorCommand } from '../failover/types';
import { actionHandlers, type ActionHandlers } from './action-handlers';
import type { FailoverRunnerDeps } from './effects';

const TICK_MS = 100;

export class FailoverRunner {
  private core: CoreState;
  private ticker: { stop(): void } | undefined;
  private stopped = false;
  /** The store write in flight, so a fresh start can wait for its adopted primary. */
  private inFlight: Promise<unknown> = Promise.resolve();
  private readonly handlers: ActionHandlers;
  private readonly watchers = new Set<(core: CoreState) => void>();

  /** `coordination` when several instances share the state: the core starts as a follower. */
  constructor(
    private readonly deps: FailoverRunnerDeps,
    cluster: ClusterState,
    coordination?: Coordination,
  ) {
    this.core = initialState(deps.names, cluster, deps.clock.now(), coordination);
    this.handlers = actionHandlers({
      deps,
      dispatch: (event) => this.dispatch(event),
      core: () => this.core,
      now: () => deps.clock.now(),
      persisting: (write) => (this.inFlight = write),
    });
  }

  get state(): CoreState {
    return this.core;
  }

  start(): void {
    // Ticks carry the clock for deadlines and retries; the core itself never reads time.
    this.ticker = this.deps.clock.every(TICK_MS, () => this.dispatch({ type: 'tick', at: this.deps.clock.now() }));
  }

  stop(): void {
    this.stopped = true;
    this.ticker?.stop();
    for (const watcher of [...this.watchers]) watcher(this.core);
  }

  report(report: NodeReport): void {
    this.dispatch({ type: 'report', at: this.deps.clock.now(), report });
  }

  onCoordination(coordination: Coordination): void {
    this.dispatch({ type: 'coordination', at: this.deps.clock.now(), coordination });
  }

  /** A state another instance wrote (or this one, seen through the watch). */
  onClusterChanged(cluster: ClusterState): void {
    const before = this.core.cluster.primary;
    this.dispatch({ type: 'cluster-changed', at: this.deps.clock.now(), cluster });
    const after = this.core.cluster.primary;
    // A follower routes to a new primary only once it has seen it out of recovery itself: look now, not at the next interval.
    if (after !== undefined && after !== before) this.deps.servers.expedite(after);
  }

  /** The primary's synchronous_standby_names is set again: the record of its lifting may go. */
  onSynchronousRestored(node: string): void {
    this.dispatch({ type: 'synchronous-restored', at: this.deps.clock.now(), node });
  }

  operator(op: OperatorCommand): CoreState {
    this.dispatch({ type: 'operator', at: this.deps.clock.now(), op });
    return this.core;
  }

  /** Resolves once no state write is pending, so a fresh start routes with its adopted primary. */
  async settled(): Promise<void> {
    while (this.core.persisting && !this.stopped) await this.inFlight;
  }

  /** Resolves with the core's state once `predicate` holds (checked after every step), rejects after `timeoutMs`. */
  waitFor(predicate: (core: CoreState) => boolean, timeoutMs: number, what: string): Promise<CoreState> {
    return new Promise((resolve, reject) => {
      const check = (core: CoreState): void => {
        if (this.stopped) {
          cleanup();
          reject(new Error(`pgfloat stopped while waiting for ${what}`));
        } else if (predicate(core)) {
          cleanup();
          resolve(core);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.watchers.delete(check);
      };
      this.watchers.add(check);
      check(this.core);
    });
  }

  private dispatch(event: FailoverEvent): void {
    if (this.stopped) return;
    const previous = this.core;
    const { state, actions } = step(previous, event, this.deps.options);
    this.core = state;
    this.deps.route(state);
    for (const action of actions) this.execute(action);
    this.deps.stepped(state, previous);
    for (const watcher of [...this.watchers]) watcher(state);
  }

  private execute(action: FailoverAction): void {
    // Each handler takes its own kind of action; the map is keyed by the same type.
    (this.handlers[action.type] as (a: FailoverAction) => void)(action);
  }
}
