// The relay of one event loop: its client sessions, their cancel keys and byte counters. pgfloat runs one in its own process (proxy.workers: 1) or one in each worker.

import { nodeAddress } from '../config/nodes';
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { NodeAddress } from '../cluster/node';
import type { Config, RoutingRule } from '../config/schema';
import type { Logger } from '../log';
import type { Refusal } from '../protocol/refusal';
import type { Router } from '../routing/router';
import type { ListenerKind, Routes } from '../routing/routes';
import { RoutingRules } from '../routing/rules';
import { BusyPoller } from './busy-poll';
import { CancelRegistry } from './cancel-registry';
import type { RelayCounts, RelayPlane, RelaySnapshot, TlsReloadReport, WorkerMetrics } from './relay-plane';
import type { RelayCounters } from './relay';
import { RelayMetrics } from './relay-metrics';
import { ClientSession } from './session';
import type { SessionEnvironment } from './session-environment';
import { SessionRegistry, type DrainResult } from './session-registry';
import { ClientTls, type ClientTlsSettings } from './tls';
import { DEFAULT_SERVER_TLS, reloadServerTlsFiles } from '../postgres/server-tls';

/** What a relay needs of the configuration: plain data (a worker gets it over IPC), and no secrets. */
export interface RelaySettings {
  nodes: NodeAddress[];
  rules: RoutingRule[];
  tls: ClientTlsSettings | null;
  startupTimeoutMs: number;
  connectTimeoutMs: number;
  keepaliveIdleMs: number;
  holdMs: number;
  busyPollUs: number;
  fallbackToPrimary: boolean;
  /** sessions.moveTimeoutMs, or null with sessions.move off. */
  moveTimeoutMs: number | null;
}

export function relaySettingsOf(config: Config): RelaySettings {
  const { proxy } = config;
  return {
    nodes: config.nodes.map((n) => nodeAddress(config, n)),
    rules: config.routing.rules,
    tls: config.tls,
    startupTimeoutMs: proxy.startupTimeoutMs,
    connectTimeoutMs: proxy.connectTimeoutMs,
    keepaliveIdleMs: proxy.keepaliveIdleMs,
    holdMs: config.failover.holdMs,
    busyPollUs: proxy.busyPollUs,
    fallbackToPrimary: config.readOnly.fallbackToPrimary,
    moveTimeoutMs: config.sessions.move ? config.sessions.moveTimeoutMs : null,
  };
}

export interface RelayHooks {
  /** A server refused or dropped a connection attempt: worth a heartbeat now. */
  onServerUnreachable(node: string): void;
  /** A cancel request for a key no session here holds: with workers, another worker's session may. */
  cancelElsewhere?(processId: number, secretKey: Buffer): void;
  /** The auth query's answer for a moving session's role (see MoveSettings); without it no session moves. */
  rolePassword?(user: string, node: string): Promise<string | null>;
}

export class LocalRelay implements RelayPlane {
  readonly loops = 1;
  readonly handsOff = false;
  readonly sessions = new SessionRegistry();
  readonly cancels = new CancelRegistry();
  private readonly counters: RelayCounters = { clientToServerBytes: 0, serverToClientBytes: 0 };
  private readonly metrics: RelayMetrics;
  private readonly env: SessionEnvironment;

  /** `router` is the one this loop routes by: the control plane's own, or a worker's copy of it. */
  constructor(
    settings: RelaySettings,
    private readonly router: Router,
    registry: Registry,
    log: Logger,
    hooks: RelayHooks,
  ) {
    this.metrics = new RelayMetrics(registry, { counters: this.counters, clientsByListener: () => this.sessions.countByListener() });
    this.env = {
      router,
      rules: new RoutingRules(settings.rules),
      nodes: new Map(settings.nodes.map((n) => [n.name, n])),
      cancels: this.cancels,
      sessions: this.sessions,
      counters: this.counters,
      tls: settings.tls ? new ClientTls(settings.tls) : undefined,
      startupTimeoutMs: settings.startupTimeoutMs,
      connectTimeoutMs: settings.connectTimeoutMs,
      keepaliveIdleMs: settings.keepaliveIdleMs,
      holdMs: settings.holdMs,
      busyPoller: settings.busyPollUs > 0 ? new BusyPoller(settings.busyPollUs) : undefined,
      log,
      onRefused: (listener, refusal) => this.metrics.onRefused(listener, refusal),
      onEstablished: (listener, route, node) => this.metrics.onEstablished(listener, route, node),
      onServerUnreachable: (node) => hooks.onServerUnreachable(node),
      cancelElsewhere: hooks.cancelElsewhere,
      rolePassword: hooks.rolePassword,
      move:
        settings.moveTimeoutMs === null || hooks.rolePassword === undefined
          ? undefined
          : { moveTimeoutMs: settings.moveTimeoutMs, rolePassword: hooks.rolePassword },
      onMove: (event) => this.metrics.onMove(event),
    };
  }

  publish(routes: Routes): void {
    this.router.publish(routes);
  }

  open(): number {
    return this.sessions.size;
  }

  start(listener: ListenerKind, socket: Socket, refusal?: Refusal): void {
    new ClientSession(socket, listener, this.env, refusal);
  }

  dropNode(node: string, refusal: Refusal): Promise<number> {
    return Promise.resolve(this.sessions.dropNode(node, refusal));
  }

  drainNode(node: string, refusal: Refusal, drainMs: number): Promise<DrainResult> {
    return this.sessions.drainNode(node, refusal, drainMs);
  }

  counts(): RelayCounts {
    const byListener = this.sessions.countByListener();
    return {
      open: this.sessions.size,
      clients: { readWrite: byListener.get('readWrite') ?? 0, readOnly: byListener.get('readOnly') ?? 0 },
      byNode: this.sessions.countByNode(),
      heldClients: this.router.heldClients,
      reroutingClients: this.router.reroutingClients,
      clientToServerBytes: this.counters.clientToServerBytes,
      serverToClientBytes: this.counters.serverToClientBytes,
      cancelKeys: this.cancels.size,
      moves: { ...this.metrics.moves, notMoved: { ...this.metrics.moves.notMoved } },
    };
  }

  snapshot(): RelaySnapshot {
    return { ...this.counts(), workers: null };
  }

  workerMetrics(): Promise<WorkerMetrics[]> {
    return Promise.resolve([]);
  }

  stop(refusal: Refusal): Promise<void> {
    this.sessions.dropAll(refusal);
    return Promise.resolve();
  }

  reloadTls(): Promise<TlsReloadReport[]> {
    return Promise.resolve([this.reloadOwnTls('control')]);
  }

  /**
   * This process's TLS files: the client-facing certificate for handshakes from now on, and the
   * server-side files read again at the next connection. There is one LocalRelay per process (the
   * control process's, or a worker's), so this reaches each process once.
   */
  reloadOwnTls(loop: string): TlsReloadReport {
    const server = reloadServerTlsFiles([...this.env.nodes.values()].map((n) => n.tls ?? DEFAULT_SERVER_TLS));
    const tls = this.env.tls;
    const client = tls?.reload();
    const reasons = [...(client?.ok === false ? [client.reason] : []), ...(server.ok ? [] : [server.reason])];
    if (reasons.length > 0) return { loop, ok: false, reason: reasons.join('; ') };
    return { loop, ok: true, ...(client?.ok === true && { certificate: client.certificate }) };
  }
}
