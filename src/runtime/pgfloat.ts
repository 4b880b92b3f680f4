// Wires one pgfloat instance together: state, monitor, router, proxy listeners and admin API.

import type { ListenAddress } from '../config/address';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import { AdminServer } from '../admin/http-server';
import { Metrics } from '../admin/metrics';
import { Monitor } from '../monitor/monitor';
import { lagBytes, roleOf, type NodeHealth } from '../monitor/observation';
import { BusyPoller } from '../proxy/busy-poll';
import { CancelRegistry } from '../proxy/cancel-registry';
import { ProxyServer } from '../proxy/proxy-server';
import type { RelayCounters } from '../proxy/relay';
import type { BackendNode, SessionEnvironment } from '../proxy/session';
import { SessionRegistry } from '../proxy/session-registry';
import { loadSecureContext } from '../proxy/tls';
import { Router } from '../routing/router';
import { RoutingRules } from '../routing/rules';
import type { ListenerKind } from '../routing/routes';
import type { ClusterState, StateStore } from '../state/cluster-state';
import { FileStateStore } from '../state/file-store';

export class Pgfloat {
  readonly monitor: Monitor;
  readonly router: Router;
  readonly sessions = new SessionRegistry();
  readonly cancels = new CancelRegistry();
  readonly metrics: Metrics;
  private readonly store: StateStore;
  private readonly counters: RelayCounters = { clientToServerBytes: 0, serverToClientBytes: 0 };
  private readonly proxy: ProxyServer;
  private readonly admin: AdminServer | undefined;
  private readonly nodeNames: string[];
  private state: ClusterState | undefined;
  private readonly startedAt = new Date();

  constructor(
    private readonly config: Config,
    log: Logger,
  ) {
    this.nodeNames = config.nodes.map((n) => n.name);
    this.store = new FileStateStore(config.state.dir);
    this.monitor = new Monitor(config.nodes, { ...config.monitor }, log.child({ component: 'monitor' }));
    this.router = new Router(
      { fallbackToPrimary: config.readOnly.fallbackToPrimary, maxLagBytes: config.readOnly.maxLagBytes },
      log.child({ component: 'router' }),
    );
    this.metrics = new Metrics(
      { counters: this.counters, clientsByListener: () => this.sessions.countByListener() },
      this.nodeNames,
    );
    const nodes = new Map<string, BackendNode>(config.nodes.map((n) => [n.name, n]));
    const env: SessionEnvironment = {
      router: this.router,
      rules: new RoutingRules(config.routing.rules),
      nodes,
      cancels: this.cancels,
      sessions: this.sessions,
      counters: this.counters,
      secureContext: config.tls ? loadSecureContext(config.tls) : undefined,
      startupTimeoutMs: config.proxy.startupTimeoutMs,
      connectTimeoutMs: config.proxy.connectTimeoutMs,
      keepaliveIdleMs: config.proxy.keepaliveIdleMs,
      busyPoller: config.proxy.busyPollUs > 0 ? new BusyPoller(config.proxy.busyPollUs) : undefined,
      log: log.child({ component: 'proxy' }),
      onRefused: (listener, refusal) => this.metrics.onRefused(listener, refusal),
      onEstablished: (listener, route, node) => this.metrics.onEstablished(listener, route, node),
    };
    const listen: Partial<Record<ListenerKind, ListenAddress>> = { readWrite: config.listen.readWrite };
    if (config.listen.readOnly) listen.readOnly = config.listen.readOnly;
    this.proxy = new ProxyServer({ listen, maxClientConnections: config.proxy.maxClientConnections }, env);
    if (config.admin.listen) {
      this.admin = new AdminServer(
        config.admin.listen,
        {
          status: () => this.status(),
          metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
        },
        log.child({ component: 'admin' }),
      );
    }
    this.monitor.on('heartbeat', (health, observation) => {
      this.metrics.onHeartbeat(health, observation);
      this.refreshRoutes();
    });
    this.router.on('change', (routes) => this.metrics.onRoutes(routes, this.nodeNames));
  }

  async start(): Promise<void> {
    this.state = await this.store.load();
    // One round of heartbeats before listening, so the first clients are not refused for lack of a view.
    await this.monitor.probeAll();
    this.refreshRoutes();
    await this.proxy.start();
    await this.admin?.start();
    this.monitor.start();
  }

  async stop(): Promise<void> {
    this.monitor.stop();
    await this.proxy.stop();
    await this.admin?.stop();
  }

  address(kind: ListenerKind | 'admin'): ListenAddress | undefined {
    return kind === 'admin' ? this.admin?.address() : this.proxy.address(kind);
  }

  status(): PgfloatStatus {
    const routes = this.router.current();
    const health = this.monitor.snapshot();
    const primaryHealth = health.find((h) => h.node === routes.primary);
    const clients = this.sessions.countByListener();
    return {
      startedAt: this.startedAt.toISOString(),
      epoch: this.state?.epoch ?? 0,
      primary: routes.primary ?? null,
      standbys: routes.standbys,
      readWrite: routes.primary ? 'routing' : `refusing: ${routes.readWriteRefusal?.message ?? 'unknown'}`,
      splitBrain: routes.readWriteRefusal?.reason === 'split-brain',
      clients: { readWrite: clients.get('readWrite') ?? 0, readOnly: clients.get('readOnly') ?? 0 },
      nodes: this.config.nodes.map((n) => nodeStatus(n, health.find((h) => h.node === n.name)!, primaryHealth, this.state, this.sessions.countOn(n.name))),
    };
  }

  private refreshRoutes(): void {
    if (this.state === undefined) return;
    this.router.update(this.monitor.snapshot(), this.state);
  }
}

export interface NodeStatus {
  name: string;
  host: string;
  port: number;
  health: string;
  role: string;
  fenced: boolean;
  sessions: number;
  systemIdentifier: string | null;
  timeline: number | null;
  lsn: string | null;
  lagBytes: number | null;
  replayDelaySeconds: number | null;
  walReceiver: string | null;
  heartbeatMs: number | null;
  lastError: string | null;
  lastSeenAt: string | null;
}

export interface PgfloatStatus {
  startedAt: string;
  epoch: number;
  primary: string | null;
  standbys: string[];
  readWrite: string;
  splitBrain: boolean;
  clients: { readWrite: number; readOnly: number };
  nodes: NodeStatus[];
}

function nodeStatus(
  node: BackendNode,
  health: NodeHealth,
  primary: NodeHealth | undefined,
  state: ClusterState | undefined,
  sessions: number,
): NodeStatus {
  const seen = health.lastReachable;
  const lsn = seen?.inRecovery ? seen.replayLsn : seen?.currentLsn;
  const lag = seen?.inRecovery ? lagBytes(primary?.lastReachable?.currentLsn, seen.replayLsn) : undefined;
  return {
    name: node.name,
    host: node.host,
    port: node.port,
    health: health.status,
    role: roleOf(health),
    fenced: state?.fenced.includes(node.name) ?? false,
    sessions,
    systemIdentifier: seen?.systemIdentifier ?? null,
    timeline: seen?.timeline ?? null,
    lsn: lsn ?? null,
    lagBytes: lag ?? null,
    replayDelaySeconds: seen?.replayDelaySeconds ?? null,
    walReceiver: seen?.walReceiverStatus ?? null,
    heartbeatMs: health.last?.reachable && health.last.latencyMs !== undefined ? Math.round(health.last.latencyMs * 100) / 100 : null,
    lastError: health.last?.reachable === false ? (health.last.error ?? null) : null,
    lastSeenAt: seen ? new Date(seen.at).toISOString() : null,
  };
}
