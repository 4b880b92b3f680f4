// The one place that decides where a client may go; everything that changes routing goes through it.

import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import type { NodeHealth } from '../monitor/observation';
import { emptyState, type ClusterState } from '../state/cluster-state';
import { SqlState } from '../protocol/codes';
import { computeRoutes, sameRoutes, type ListenerKind, type Refusal, type RouteOptions, type Routes, type WriteGate } from './routes';

export interface RouterOptions extends RouteOptions {
  fallbackToPrimary: boolean;
  /** How long a held read-write client waits for a primary before it is refused. */
  holdMs: number;
}

export type RouteDecision = { ok: true; node: string } | { ok: false; refusal: Refusal };

export interface RouterEvents {
  change: [next: Routes, previous: Routes];
}

export class Router extends EventEmitter<RouterEvents> {
  private routes: Routes;
  private roundRobin = 0;
  private heldBecause: string | undefined;
  private readonly waiting = new Set<() => void>();

  constructor(
    private readonly options: RouterOptions,
    private readonly log: Logger,
  ) {
    super();
    // Every client waiting for a new primary listens for the change: there may be thousands.
    this.setMaxListeners(0);
    this.routes = computeRoutes([], emptyState(), options);
  }

  current(): Routes {
    return this.routes;
  }

  update(health: readonly NodeHealth[], state: ClusterState, gate?: WriteGate): void {
    const next = computeRoutes(health, state, this.options, gate);
    const previous = this.routes;
    if (sameRoutes(previous, next)) {
      this.routes = next;
      return;
    }
    this.routes = next;
    this.logChange(next, previous);
    this.emit('change', next, previous);
  }

  /** New read-write clients wait in decide() until release(), or holdMs at most. */
  hold(reason: string): void {
    if (this.heldBecause === undefined) this.log.warn({ reason }, 'holding new read-write clients');
    this.heldBecause = reason;
  }

  release(): void {
    if (this.heldBecause === undefined) return;
    this.heldBecause = undefined;
    this.log.info({ waiting: this.waiting.size, primary: this.routes.primary ?? null }, 'releasing held read-write clients');
    for (const wake of [...this.waiting]) wake();
  }

  get held(): boolean {
    return this.heldBecause !== undefined;
  }

  get heldClients(): number {
    return this.waiting.size;
  }

  /**
   * Decides a target for a new client. While writes are held (a failover, a suspect primary)
   * read-write clients wait here instead of being refused.
   */
  async decide(kind: ListenerKind): Promise<RouteDecision> {
    if (kind === 'readWrite' && this.heldBecause !== undefined) await this.waitForRelease();
    return this.decideNow(kind);
  }

  /** Resolves at the next routing change or release, or after `timeoutMs`. */
  waitForChange(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('change', done);
        this.waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.once('change', done);
      this.waiting.add(done);
    });
  }

  private waitForRelease(): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, this.options.holdMs);
      this.waiting.add(wake);
    });
  }

  /** Whether a client of this kind may still be connected to `node` under the current routes. */
  allows(kind: ListenerKind, node: string): boolean {
    const { primary, standbys } = this.routes;
    if (kind === 'readWrite') return primary === node && this.heldBecause === undefined;
    return standbys.includes(node) || (this.options.fallbackToPrimary && primary === node);
  }

  decideNow(kind: ListenerKind): RouteDecision {
    const { primary, standbys, readWriteRefusal } = this.routes;
    if (kind === 'readWrite') {
      return primary !== undefined ? { ok: true, node: primary } : { ok: false, refusal: readWriteRefusal! };
    }
    if (standbys.length > 0) {
      this.roundRobin = (this.roundRobin + 1) % standbys.length;
      return { ok: true, node: standbys[this.roundRobin]! };
    }
    if (this.options.fallbackToPrimary && primary !== undefined) return { ok: true, node: primary };
    return {
      ok: false,
      refusal: {
        reason: 'no-standby',
        code: SqlState.cannotConnectNow,
        message: 'no healthy standby available for read-only connections',
        detail: this.options.fallbackToPrimary ? 'and no verified primary to fall back to' : 'readOnly.fallbackToPrimary is off',
      },
    };
  }

  private logChange(next: Routes, previous: Routes): void {
    const fields = {
      primary: next.primary ?? null,
      previousPrimary: previous.primary ?? null,
      standbys: next.standbys,
      previousStandbys: previous.standbys,
      claimants: next.claimants,
    };
    if (next.readWriteRefusal?.reason === 'split-brain') {
      this.log.error({ ...fields, reason: 'split-brain' }, 'split brain: more than one node claims primary; refusing writes');
    } else if (next.primary === undefined && this.heldBecause !== undefined) {
      this.log.info({ ...fields, held: this.heldBecause }, 'no verified primary; new read-write clients are held');
    } else if (next.primary === undefined) {
      this.log.warn({ ...fields, reason: next.readWriteRefusal?.reason }, 'no verified primary; refusing read-write clients');
    } else {
      this.log.info(fields, 'routing changed');
    }
  }
}
