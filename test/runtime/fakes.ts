// Fake effects for the failover runner: a clock moved by hand, an in-memory store, and servers and sessions that record what they are asked.

import { Writable } from 'node:stream';
import { emptyState, type ClusterState, type LiftedSynchronous } from '../../src/cluster/state';
import { createLogger, type Logger } from '../../src/log';
import type { Refusal } from '../../src/protocol/refusal';
import type { Clock, Progress, ServerEffects, SessionEffects } from '../../src/runtime/effects';
import type { StateStore } from '../../src/state/store';

/** Everything the effects were asked to do, in order, as short lines ("drop n1", "route n2"). */
export type Journal = string[];

export class FakeClock implements Clock {
  private ticks: Array<() => void> = [];
  constructor(public time = 1_000_000) {}

  now(): number {
    return this.time;
  }

  every(_ms: number, tick: () => void): { stop(): void } {
    this.ticks.push(tick);
    return { stop: () => (this.ticks = this.ticks.filter((t) => t !== tick)) };
  }

  /** Moves time on and runs one tick. */
  advance(ms: number): void {
    this.time += ms;
    for (const tick of [...this.ticks]) tick();
  }
}

export class FakeStore implements StateStore {
  /** Set to make the next compare-and-set lose to another writer, or fail outright. */
  nextWrite: 'ok' | 'conflict' | 'error' = 'ok';

  constructor(
    public cluster: ClusterState,
    private readonly journal: Journal,
  ) {}

  async load(): Promise<ClusterState> {
    return this.cluster;
  }

  async compareAndSet(expectedRevision: number, next: Omit<ClusterState, 'revision'>): Promise<ClusterState | undefined> {
    const outcome = this.nextWrite;
    this.nextWrite = 'ok';
    if (outcome === 'error') {
      this.journal.push('persist failed');
      throw new Error('store unavailable');
    }
    if (outcome === 'conflict') {
      // Another writer got there first: the stored revision moved on.
      this.cluster = { ...this.cluster, revision: this.cluster.revision + 1 };
    }
    if (expectedRevision !== this.cluster.revision) {
      this.journal.push(`persist lost at revision ${expectedRevision}`);
      return undefined;
    }
    this.cluster = { ...next, revision: expectedRevision + 1 };
    this.journal.push(`persist revision ${this.cluster.revision} primary=${this.cluster.primary ?? '-'} fenced=${this.cluster.fenced.join(',') || '-'}`);
    return this.cluster;
  }
}

export class FakeSessions implements SessionEffects {
  /** What drainNode resolves with; a rejection when set to an Error. */
  drainOutcome: { atBoundary: number; cut: number } | Error = { atBoundary: 2, cut: 0 };

  constructor(private readonly journal: Journal) {}

  private dropsHeld: Promise<void> | undefined;

  /** Drops answer only once the returned function is called (a worker slow to confirm). */
  holdDrops(): () => void {
    let release!: () => void;
    this.dropsHeld = new Promise((resolve) => (release = resolve));
    return release;
  }

  async dropNode(node: string, refusal: Refusal): Promise<number> {
    this.journal.push(`drop ${node} (${refusal.reason})`);
    await this.dropsHeld;
    return 1;
  }

  async drainNode(node: string, refusal: Refusal): Promise<{ atBoundary: number; cut: number }> {
    this.journal.push(`drain ${node} (${refusal.reason})`);
    if (this.drainOutcome instanceof Error) throw this.drainOutcome;
    return this.drainOutcome;
  }
}

export class FakeServers implements ServerEffects {
  fenceOutcome: string | Error = 'fenced';
  /** Undefined: promotion never answers. */
  promoteOutcome: string | Error | undefined = '';
  lifted: LiftedSynchronous | undefined;
  finalLsn = '0/3000200';

  constructor(private readonly journal: Journal) {}

  async fence(node: string): Promise<string> {
    this.journal.push(`fence ${node}`);
    if (this.fenceOutcome instanceof Error) throw this.fenceOutcome;
    return this.fenceOutcome;
  }

  promote(node: string): Promise<string> {
    this.journal.push(`promote ${node}`);
    const outcome = this.promoteOutcome;
    if (outcome === undefined) return new Promise(() => undefined);
    return outcome instanceof Error ? Promise.reject(outcome) : Promise.resolve(outcome);
  }

  async afterPromotion(node: string, names: string, current: LiftedSynchronous | undefined): Promise<LiftedSynchronous | undefined> {
    this.journal.push(`after promotion ${node} names='${names}'`);
    return this.lifted ?? current;
  }

  async stopWrites(node: string, target: string, progress: Progress): Promise<string> {
    this.journal.push(`stop writes ${node} for ${target}`);
    progress(`${node} read-only`);
    return this.finalLsn;
  }

  async resumeWrites(node: string): Promise<void> {
    this.journal.push(`resume writes ${node}`);
  }

  async awaitReplay(node: string, lsn: string): Promise<void> {
    this.journal.push(`await replay ${node} ${lsn}`);
  }

  expedite(node: string): void {
    this.journal.push(`expedite ${node}`);
  }
}

/** A logger whose lines are kept, parsed, for assertions on levels and messages. */
export function capturingLogger(): { log: Logger; lines: Array<{ level: number; msg: string; [key: string]: unknown }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

export function adoptedState(): ClusterState {
  return { ...emptyState(), revision: 1, epoch: 1, primary: 'n1', systemIdentifier: 'sys', timeline: 1, lastKnownPrimaryLsn: '0/3000000' };
}

/** Lets promise callbacks (the effects' answers) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}
