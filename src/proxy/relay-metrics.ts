// The metrics each relay event loop counts for its own sessions; with workers, /metrics sums them over the workers.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { Refusal } from '../protocol/refusal';
import type { RelayCounters } from './relay';
import type { ListenerKind } from '../routing/routes';
import type { MoveCounts } from './relay-plane';
import { MOVE_FAILURE_REASONS, type MoveEvent } from './session-move';

export interface RelayMetricsSources {
  counters: RelayCounters;
  clientsByListener(): Map<string, number>;
}

export class RelayMetrics {
  private readonly refusals: Counter<'listener' | 'reason'>;
  private readonly established: Counter<'listener' | 'route' | 'node'>;
  private readonly moved: Counter;
  private readonly notMoved: Counter<'reason'>;
  /** The same counts, for /status. */
  readonly moves: MoveCounts = { moving: 0, moved: 0, notMoved: {} };

  constructor(registry: Registry, sources: RelayMetricsSources) {
    const registers = [registry];
    new Gauge({
      name: 'pgfloat_client_connections',
      help: 'Client connections open now, by listener',
      labelNames: ['listener'],
      registers,
      collect() {
        const counts = sources.clientsByListener();
        for (const listener of ['readWrite', 'readOnly']) this.set({ listener }, counts.get(listener) ?? 0);
      },
    });
    this.established = new Counter({
      name: 'pgfloat_sessions_established_total',
      help: 'Client sessions that completed startup, by listener, route and node',
      labelNames: ['listener', 'route', 'node'],
      registers,
    });
    this.refusals = new Counter({
      name: 'pgfloat_client_refusals_total',
      help: 'Clients refused by pgfloat with an ErrorResponse, by listener and reason',
      labelNames: ['listener', 'reason'],
      registers,
    });
    new Counter({
      name: 'pgfloat_relayed_bytes_total',
      help: 'Bytes relayed between clients and servers, by direction',
      labelNames: ['direction'],
      registers,
      collect() {
        // Counted as plain numbers on the hot path; copied into the counter only when scraped.
        this.reset();
        this.inc({ direction: 'client_to_server' }, sources.counters.clientToServerBytes);
        this.inc({ direction: 'server_to_client' }, sources.counters.serverToClientBytes);
      },
    });
    this.moved = new Counter({
      name: 'pgfloat_sessions_moved_total',
      help: 'Client sessions moved to another server at a transaction boundary (sessions.move), instead of being closed',
      registers,
    });
    this.notMoved = new Counter({
      name: 'pgfloat_sessions_not_moved_total',
      help: 'Client sessions that could not move and were closed, by reason',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of MOVE_FAILURE_REASONS) this.notMoved.inc({ reason }, 0);
    for (const listener of ['readWrite', 'readOnly']) {
      for (const reason of ['no-primary', 'split-brain', 'no-standby', 'backend-unreachable']) this.refusals.inc({ listener, reason }, 0);
    }
  }

  onRefused(listener: ListenerKind, refusal: Refusal): void {
    this.refusals.inc({ listener, reason: refusal.reason });
  }

  onMove(event: MoveEvent): void {
    const moves = this.moves;
    if (event === 'started') {
      moves.moving++;
      return;
    }
    moves.moving--;
    if (event === 'moved') {
      moves.moved++;
      this.moved.inc();
    } else {
      moves.notMoved[event] = (moves.notMoved[event] ?? 0) + 1;
      this.notMoved.inc({ reason: event });
    }
  }

  onEstablished(listener: ListenerKind, route: ListenerKind, node: string): void {
    this.established.inc({ listener, route, node });
  }
}
