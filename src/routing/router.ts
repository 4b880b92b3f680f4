// The one place that decides where a client may go; everything that changes routing goes through it.

import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import type { NodeHealth } from '../monitor/observation';
import { emptyState, type ClusterState } from '../state/cluster-state';
import { SqlState } from '../protocol/codes';
import { computeRoutes, sameRoutes, type ListenerKind, type Refusal, type RouteOptions, type Routes } from './routes';

export interface RouterOptions extends RouteOptions {
  fallbackToPrimary: boolean;
}

export type RouteDecision = { ok: true; node: string } | { ok: false; refusal: Refusal };

export interface RouterEvents {
  change: [next: Routes, previous: Routes];
}

export class Router extends EventEmitter<RouterEvents> {
  private routes: Routes;
  private roundRobin = 0;

  constructor(
    private readonly options: RouterOptions,
    private readonly log: Logger,
  ) {
    super();
    this.routes = computeRoutes([], emptyState(), options);
  }

  current(): Routes {
    return this.routes;
  }

  update(health: readonly NodeHealth[], state: ClusterState): void {
    const next = computeRoutes(health, state, this.options);
    const previous = this.routes;
    if (sameRoutes(previous, next)) {
      this.routes = next;
      return;
    }
    this.routes = next;
    this.logChange(next, previous);
    this.emit('change', next, previous);
  }

  /**
   * Decides a target for a new client. Async so that a failover can hold clients here
   * until a new primary is verified, instead of refusing them.
   */
  async decide(kind: ListenerKind): Promise<RouteDecision> {
    return this.decideNow(kind);
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
    } else if (next.primary === undefined) {
      this.log.warn({ ...fields, reason: next.readWriteRefusal?.reason }, 'no verified primary; refusing read-write clients');
    } else {
      this.log.info(fields, 'routing changed');
    }
  }
}
