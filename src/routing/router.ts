// Applies the published routing decision to each new client: where it goes, or why not, and holding read-write clients while the gate says so.

import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import { SqlState } from '../protocol/codes';
import type { Refusal } from '../protocol/refusal';
import { noRoutes, sameRoutes, type ListenerKind, type Routes } from './routes';

export interface RouterOptions {
  fallbackToPrimary: boolean;
  /** How long a held read-write client waits for a primary before it is refused. */
  holdMs: number;
}

export type RouteDecision = { ok: true; node: string } | { ok: false; refusal: Refusal };

export interface RouterEvents {
  change: [next: Routes, previous: Routes];
}

const NOT_YET_ROUTED: Refusal = {
  reason: 'no-primary',
  code: SqlState.cannotConnectNow,
  message: 'no verified primary available',
  detail: 'pgfloat has not judged the nodes yet',
};

/**
 * Holds no opinion of its own: `publish()` is its only input, the decision computed from the
 * failover core after each of its steps (see routes.ts). It adds only what belongs to one client:
 * the wait while writes are held, and round robin over the standbys.
 */
export class Router extends EventEmitter<RouterEvents> {
  private routes: Routes = noRoutes();
  private roundRobin = 0;
  /** Read-write clients waiting for the gate to open (writes held). */
  private readonly held = new Set<() => void>();
  /** Clients waiting for routing to change after their server refused them. */
  private readonly rerouting = new Set<() => void>();

  constructor(
    private readonly options: RouterOptions,
    private readonly log: Logger,
  ) {
    super();
    // Every client waiting for a new primary listens for the change: there may be thousands.
    this.setMaxListeners(0);
  }

  current(): Routes {
    return this.routes;
  }

  /** Takes the newest decision: a hold that ends lets its clients go, a change wakes those waiting for one. */
  publish(next: Routes): void {
    const previous = this.routes;
    this.routes = next;
    if (next.heldBecause !== undefined && previous.heldBecause === undefined) {
      this.log.warn({ reason: next.heldBecause }, 'holding new read-write clients');
    }
    const released = next.heldBecause === undefined && previous.heldBecause !== undefined;
    if (released) this.log.info({ waiting: this.held.size, primary: next.primary ?? null }, 'releasing held read-write clients');
    if (!sameRoutes(previous, next)) {
      this.logChange(next, previous);
      this.emit('change', next, previous);
    }
    if (released) for (const wake of [...this.held]) wake();
  }

  get writesHeld(): boolean {
    return this.routes.heldBecause !== undefined;
  }

  /** Read-write clients waiting while writes are held. */
  get heldClients(): number {
    return this.held.size;
  }

  /** Clients waiting for routing to change after a server refused their connection. */
  get reroutingClients(): number {
    return this.rerouting.size;
  }

  /**
   * Decides a target for a new client. While writes are held (a failover, a suspect primary)
   * read-write clients wait here instead of being refused.
   */
  async decide(kind: ListenerKind): Promise<RouteDecision> {
    if (kind === 'readWrite' && this.routes.heldBecause !== undefined) await this.waitIn(this.held, this.options.holdMs, false);
    return this.decideNow(kind);
  }

  /** Resolves at the next routing change or release, or after `timeoutMs`. */
  waitForChange(timeoutMs: number): Promise<void> {
    return this.waitIn(this.rerouting, timeoutMs, true);
  }

  private waitIn(waiters: Set<() => void>, timeoutMs: number, onChange: boolean): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (onChange) this.off('change', done);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      if (onChange) this.once('change', done);
      waiters.add(done);
    });
  }

  /** Whether a client of this kind may still be connected to `node` under the current routes. */
  allows(kind: ListenerKind, node: string): boolean {
    const { primary, standbys } = this.routes;
    if (kind === 'readWrite') return primary === node;
    return standbys.includes(node) || (this.options.fallbackToPrimary && primary === node);
  }

  decideNow(kind: ListenerKind): RouteDecision {
    const { primary, standbys, readWriteRefusal } = this.routes;
    if (kind === 'readWrite') {
      return primary !== undefined ? { ok: true, node: primary } : { ok: false, refusal: readWriteRefusal ?? NOT_YET_ROUTED };
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
    } else if (next.primary === undefined && next.heldBecause !== undefined) {
      this.log.info({ ...fields, held: next.heldBecause }, 'no verified primary; new read-write clients are held');
    } else if (next.primary === undefined) {
      this.log.warn({ ...fields, reason: next.readWriteRefusal?.reason }, 'no verified primary; refusing read-write clients');
    } else {
      this.log.info(fields, 'routing changed');
    }
  }
}
