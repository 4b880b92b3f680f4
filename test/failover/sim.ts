// Drives the failover core like the runtime would: a logical clock, and a store that answers persist actions.

import { initialState, step } from '../../src/failover/core';
import { writableNode } from '../../src/failover/write-gate';
import type { CoreState, FailoverAction, FailoverEvent, FailoverOptions, NodeReport } from '../../src/failover/types';
import { emptyState, type ClusterState } from '../../src/cluster/state';

/**
 * Whether read-write clients are held is state the runtime publishes (the write gate) before it
 * runs a step's actions; the simulation shows a change of it as a pseudo-action in front of them:
 * `hold-writes` when a hold starts or its reason changes, `release-writes` when it ends.
 */
export type StepEntry = FailoverAction | { type: 'hold-writes'; reason: string } | { type: 'release-writes' };

/** An event without its time: the simulation's clock supplies it. */
type Untimed<E> = E extends FailoverEvent ? Omit<E, 'at'> & { at?: number } : never;

export const defaultOptions: FailoverOptions = {
  automatic: true,
  requireStandbyConfirmation: true,
  standbyConfirmationMs: 3000,
  maxLagBytes: 1024 * 1024,
  promoteTimeoutMs: 5000,
  retryIntervalMs: 2000,
  notPromotable: [],
  switchover: { drainMs: 1000, maxLagBytes: 16 * 1024 * 1024, catchUpTimeoutMs: 2000 },
};

export class Sim {
  state: CoreState;
  now = 0;
  last: StepEntry[] = [];
  all: StepEntry[] = [];
  store: ClusterState;

  constructor(
    names: string[] = ['n1', 'n2'],
    cluster: ClusterState = emptyState(),
    readonly options: FailoverOptions = defaultOptions,
  ) {
    this.store = cluster;
    this.state = initialState(names, cluster, 0);
  }

  /**
   * Whether the relay answers every drop-sessions at once (its sessions-dropped steps are shown
   * with the step that asked); off, a test answers with `droppedSessions`.
   */
  acknowledgeDrops = true;

  send(event: Untimed<FailoverEvent>): StepEntry[] {
    const entries = this.stepOnce(event);
    if (this.acknowledgeDrops) {
      // The answer to an operator command belongs to its own step; the relay's answers come after it.
      const answer = this.state.operatorAnswer;
      for (const drop of entries.filter((a) => a.type === 'drop-sessions')) entries.push(...this.stepOnce({ type: 'sessions-dropped', node: drop.node, sessions: 0 }));
      this.state.operatorAnswer ??= answer;
    }
    this.last = entries;
    this.all.push(...entries);
    return entries;
  }

  droppedSessions(node: string): StepEntry[] {
    return this.send({ type: 'sessions-dropped', node, sessions: 0 });
  }

  private stepOnce(event: Untimed<FailoverEvent>): StepEntry[] {
    const before = this.state.heldBecause;
    const result = step(this.state, { ...event, at: event.at ?? this.now } as FailoverEvent, this.options);
    this.state = result.state;
    const after = result.state.heldBecause;
    const gate: StepEntry[] = after !== undefined && after !== before ? [{ type: 'hold-writes', reason: after }] : after === undefined && before !== undefined ? [{ type: 'release-writes' }] : [];
    return [...gate, ...result.actions];
  }

  report(report: Partial<NodeReport> & { node: string }): StepEntry[] {
    return this.send({ type: 'report', report: { status: 'up', systemIdentifier: 'sys', ...report } });
  }

  primary(node: string, lsn = '0/3000000', timeline = 1): StepEntry[] {
    return this.report({ node, inRecovery: false, currentLsn: lsn, timeline });
  }

  standby(node: string, receiveLsn = '0/3000000', timeline = 1, seesPrimary = true): StepEntry[] {
    return this.report({ node, inRecovery: true, receiveLsn, timeline, seesPrimary });
  }

  down(node: string): StepEntry[] {
    return this.report({ node, status: 'down', inRecovery: undefined, systemIdentifier: undefined });
  }

  tick(ms: number): StepEntry[] {
    this.now += ms;
    return this.send({ type: 'tick' });
  }

  /** Answers the persist action of the last step as the file store would (compare-and-set). */
  answerPersist(succeed = true): StepEntry[] {
    const persist = this.last.find((a): a is Extract<FailoverAction, { type: 'persist' }> => a.type === 'persist');
    if (persist === undefined) throw new Error(`no persist action in ${JSON.stringify(this.last)}`);
    if (!succeed || persist.expectedRevision !== this.store.revision) {
      return this.send({ type: 'persist-failed', error: 'simulated' });
    }
    this.store = { ...persist.cluster, revision: this.store.revision + 1 };
    return this.send({ type: 'persisted', cluster: this.store });
  }

  writable(): string | undefined {
    return writableNode(this.state, this.options);
  }

  types(actions: StepEntry[] = this.last): string[] {
    return actions.filter((a) => a.type !== 'log').map((a) => ('node' in a ? `${a.type} ${a.node}` : a.type));
  }

  logs(actions: StepEntry[] = this.all): string[] {
    return actions.flatMap((a) => (a.type === 'log' ? [a.message] : []));
  }
}

/** A healthy, adopted two-node cluster: n1 primary at epoch 1, n2 streaming. */
export function adoptedCluster(options: FailoverOptions = defaultOptions): Sim {
  const sim = new Sim(['n1', 'n2'], emptyState(), options);
  sim.primary('n1');
  sim.standby('n2');
  sim.answerPersist();
  sim.primary('n1');
  return sim;
}
