// The metrics each relay event loop counts for its own sessions; with workers, /metrics sums them over the workers.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { Refusal } from '../protocol/refusal';
import type { RelayCounters } from './relay';
import type { ListenerKind } from '../routing/routes';

export interface RelayMetricsSources {
  counters: RelayCounters;
  clientsByListener(): Map<string, number>;
}

export class RelayMetrics {
  private readonly refusals: Counter<'listener' | 'reason'>;
  private readonly established: Counter<'listener' | 'route' | 'node'>;

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
    for (const listener of ['readWrite', 'readOnly']) {
      for (const reason of ['no-primary', 'split-brain', 'no-standby', 'backend-unreachable']) this.refusals.inc({ listener, reason }, 0);
    }
  }

  onRefused(listener: ListenerKind, refusal: Refusal): void {
    this.refusals.inc({ listener, reason: refusal.reason });
  }

  onEstablished(listener: ListenerKind, route: ListenerKind, node: string): void {
    this.established.inc({ listener, route, node });
  }
}
