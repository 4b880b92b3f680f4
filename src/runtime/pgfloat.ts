// Wires one pgfloat instance together: state, monitor, router, proxy listeners and admin API.

import type { ListenAddress } from '../config/address';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import { AdminServer, type AdminOperation } from '../admin/http-server';
import { Metrics } from '../admin/metrics';
import { Monitor } from '../monitor/monitor';
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
import { emptyState, type ClusterState, type StateStore } from '../state/cluster-state';
import type { EtcdCoordinator } from '../state/etcd-coordinator';
import { createStateBackend } from './state-backend';
import type { CoreState, OperatorCommand } from '../failover/types';
import { FailoverRunner } from './failover-runner';
import { EventEmitter } from 'node:events';
import { managerFor, type ManagementContext, type NodeManager } from '../management/node-manager';
import { findPgBinaries, pgBinariesAt } from '../sandbox/pg-binaries';
import { NodeAdmin } from './node-admin';
import { Operations } from './operations';
import * as procedures from './procedures';
import { buildStatus, type PgfloatStatus } from './status';
import { SynchronousGuard } from './synchronous-guard';
import { join } from 'node:path';

/** How often a lifted synchronous_standby_names is checked for restoring. */
const SYNCHRONOUS_CHECK_MS = 1000;

export class Pgfloat {
  readonly monitor: Monitor;
  readonly router: Router;
  readonly sessions = new SessionRegistry();
  readonly cancels = new CancelRegistry();
  readonly metrics: Metrics;
  private readonly store: StateStore;
  /** Several instances sharing the state through etcd; undefined for the file store. */
  private readonly coordinator: EtcdCoordinator | undefined;
  private readonly instance: string | undefined;
  private readonly counters: RelayCounters = { clientToServerBytes: 0, serverToClientBytes: 0 };
  private readonly proxy: ProxyServer;
  private readonly admin: AdminServer | undefined;
  private readonly nodeNames: string[];
  private state: ClusterState | undefined;
  private failover: FailoverRunner | undefined;
  private readonly startedAt = new Date();
  private readonly nodes: Map<string, BackendNode>;
  private readonly log: Logger;
  readonly operations: Operations;
  private readonly nodeAdmin: NodeAdmin;
  /** Nodes pgfloat can stop, start and rejoin itself (nodes[].dataDir or nodes[].commands). */
  private readonly managers: Map<string, NodeManager>;
  /** 'core' after every failover-core step: what long operations wait on. */
  private readonly coreEvents = new EventEmitter().setMaxListeners(0);
  private readonly synchronous: SynchronousGuard;
  private synchronousTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: Config,
    log: Logger,
  ) {
    this.log = log;
    this.operations = new Operations(log.child({ component: 'operations' }));
    this.nodeAdmin = new NodeAdmin(config.monitor, Math.min(config.proxy.connectTimeoutMs, config.monitor.timeoutMs * 2));
    this.managers = createManagers(config, log.child({ component: 'management' }));
    this.nodeNames = config.nodes.map((n) => n.name);
    const backend = createStateBackend(config, log.child({ component: 'etcd' }));
    this.store = backend.store;
    this.coordinator = backend.coordinator;
    this.instance = backend.instance;
    this.synchronous = new SynchronousGuard(
      this.nodeAdmin,
      join(config.state.dir, 'lifted-synchronous-standby-names.json'),
      config.failover.keepSynchronousWhenAlone,
      config.failover.promoteTimeoutMs,
      log.child({ component: 'synchronous' }),
    );
    this.monitor = new Monitor(config.nodes, { ...config.monitor }, log.child({ component: 'monitor' }));
    this.router = new Router(
      { fallbackToPrimary: config.readOnly.fallbackToPrimary, maxLagBytes: config.readOnly.maxLagBytes, holdMs: config.failover.holdMs },
      log.child({ component: 'router' }),
    );
    this.metrics = new Metrics(
      { counters: this.counters, clientsByListener: () => this.sessions.countByListener() },
      this.nodeNames,
    );
    const nodes = new Map<string, BackendNode>(config.nodes.map((n) => [n.name, n]));
    this.nodes = nodes;
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
      holdMs: config.failover.holdMs,
      busyPoller: config.proxy.busyPollUs > 0 ? new BusyPoller(config.proxy.busyPollUs) : undefined,
      log: log.child({ component: 'proxy' }),
      onRefused: (listener, refusal) => this.metrics.onRefused(listener, refusal),
      onEstablished: (listener, route, node) => this.metrics.onEstablished(listener, route, node),
      onServerUnreachable: (node) => this.monitor.expedite(node),
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
          nodeNames: () => this.nodeNames,
          roles: () => ({ primary: this.router.current().primary, standbys: this.router.current().standbys }),
          operate: (op) => this.operate(op),
          operation: (id) => this.operations.get(id),
          operations: () => this.operations.list(),
        },
        log.child({ component: 'admin' }),
        config.admin.token ?? undefined,
      );
    }
    this.monitor.on('heartbeat', (health, observation) => {
      this.metrics.onHeartbeat(health, observation);
      // With failover on, the core's step ends in refreshRoutes (onChange).
      if (this.failover) this.failover.onHeartbeat(health);
      else this.refreshRoutes();
    });
    this.router.on('change', (routes) => this.metrics.onRoutes(routes, this.nodeNames));
  }

  async start(): Promise<void> {
    this.state = await this.loadState();
    await this.synchronous.load();
    if (this.config.failover.enabled) this.failover = this.createFailoverRunner(this.state);
    if (this.coordinator) {
      this.coordinator.on('coordination', (c) => this.failover?.onCoordination(c));
      this.coordinator.on('cluster', (c) => this.failover?.onClusterChanged(c));
      // Waits a lease's length at most: an instance that cannot reach etcd still serves reads.
      await this.coordinator.start(this.config.state.etcd!.leaseTtlSeconds * 1000);
    }
    // One round of heartbeats before listening, so the first clients are not refused for lack of a view.
    for (const health of await this.monitor.probeAll()) this.failover?.onHeartbeat(health);
    await this.failover?.settled();
    this.refreshRoutes();
    this.failover?.start();
    await this.proxy.start();
    await this.admin?.start();
    const admin = this.admin?.address();
    if (admin) this.coordinator?.setAdmin(`http://${admin.host.includes(':') ? `[${admin.host}]` : admin.host}:${admin.port}`);
    this.monitor.start();
    if (this.failover) {
      this.synchronousTimer = setInterval(() => {
        const core = this.failover?.state;
        const primary = core?.phase.kind === 'steady' ? core.cluster.primary : undefined;
        void this.synchronous.check(primary === undefined ? undefined : this.nodes.get(primary));
      }, SYNCHRONOUS_CHECK_MS);
      this.synchronousTimer.unref();
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.synchronousTimer);
    this.failover?.stop();
    this.monitor.stop();
    await this.proxy.stop();
    // Only once its sessions are gone: revoking the lease lets the others stop waiting for this instance.
    await this.coordinator?.stop();
    await this.admin?.stop();
  }

  /** With etcd unreachable at start there is no state to read: start from none and take etcd's once connected. */
  private async loadState(): Promise<ClusterState> {
    if (this.coordinator === undefined) return this.store.load();
    try {
      return await this.store.load();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cannot read the cluster state from etcd; routing no writes until it can');
      return emptyState();
    }
  }

  private createFailoverRunner(cluster: ClusterState): FailoverRunner {
    const { failover, fencing, switchover } = this.config;
    return new FailoverRunner(
      {
        options: { ...failover, switchover, notPromotable: this.config.nodes.filter((n) => !n.promotable).map((n) => n.name) },
        fencing,
        nodes: this.nodes,
        store: this.store,
        router: this.router,
        sessions: this.sessions,
        admin: this.nodeAdmin,
        log: this.log.child({ component: 'failover' }),
        drainSessions: (node, refusal, drainMs) => this.sessions.drainNode(node, refusal, drainMs),
        afterPromotion: (node, names) => this.synchronous.afterPromotion(node, names),
        control: (node) => this.managers.get(node),
        expedite: (node) => this.monitor.expedite(node),
        onChange: (core) => {
          this.refreshRoutes();
          this.coreEvents.emit('core', core);
          // Published after the step's actions ran: the applied revision says its sessions to fenced nodes are gone.
          this.coordinator?.publish(Object.fromEntries(this.monitor.snapshot().map((h) => [h.node, h.status])), core.cluster.revision);
        },
        onCoreLog: (_level, message) => {
          const op = this.operations.current;
          if (op !== undefined && op.record.kind !== 'rejoin') op.progress(message);
        },
        onFailoverFinished: (result) => this.metrics.onFailover(result),
      },
      cluster,
      this.coordinator?.coordination(),
    );
  }

  address(kind: ListenerKind | 'admin'): ListenAddress | undefined {
    return kind === 'admin' ? this.admin?.address() : this.proxy.address(kind);
  }

  status(): PgfloatStatus {
    return buildStatus({
      startedAt: this.startedAt,
      nodes: this.config.nodes,
      routes: this.router.current(),
      health: this.monitor.snapshot(),
      cluster: this.cluster(),
      core: this.failover?.state,
      sessions: this.sessions,
      heldClients: this.router.heldClients,
      operation: this.operations.current?.record,
      synchronousLifted: this.synchronous.status(),
      instance: this.instance,
      instances: this.coordinator?.instances(),
    });
  }

  /** The cluster state as last persisted (the failover core's copy once it runs). */
  cluster(): ClusterState | undefined {
    return this.failover?.state.cluster ?? this.state;
  }

  /** An admin API operation: the long ones become Operations, the others are answered at once by the core. */
  async operate(op: AdminOperation): Promise<procedures.ProcedureAnswer> {
    const ctx = this.procedureContext();
    switch (op.command) {
      case 'switchover':
        return procedures.switchover(ctx, op);
      case 'failover':
        return procedures.failover(ctx, op);
      case 'rejoin':
        return procedures.rejoin(ctx, op.node, op.rebuild);
      default:
        return ctx.command(op);
    }
  }

  private procedureContext(): procedures.ProcedureContext {
    const { switchover, fencing, failover, management } = this.config;
    return {
      operations: this.operations,
      nodes: this.nodes,
      admin: this.nodeAdmin,
      core: () => this.failover?.state,
      command: (op) => {
        if (this.failover === undefined) return { accepted: false, message: 'refused: failover is disabled (failover.enabled: false)' };
        return this.failover.operator(op).operatorAnswer ?? { accepted: false, message: 'no answer' };
      },
      waitForCore: (predicate, timeoutMs, what) => this.waitForCore(predicate, timeoutMs, what),
      manager: (node) => this.managers.get(node),
      expedite: (node) => this.monitor.expedite(node),
      outcomeTimeoutMs: switchover.drainMs + 2 * fencing.timeoutMs + switchover.catchUpTimeoutMs + failover.promoteTimeoutMs + 30_000,
      rejoinTimeoutMs: management.rejoinTimeoutMs,
      adminTimeoutMs: Math.max(this.config.monitor.timeoutMs * 2, 5_000),
    };
  }

  private waitForCore(predicate: (core: CoreState) => boolean, timeoutMs: number, what: string): Promise<CoreState> {
    return new Promise((resolve, reject) => {
      const check = (core: CoreState): void => {
        if (!predicate(core)) return;
        cleanup();
        resolve(core);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.coreEvents.off('core', check);
      };
      this.coreEvents.on('core', check);
      if (this.failover) check(this.failover.state);
    });
  }

  /** Operator commands go to the failover core; without it they are refused. */
  operator(op: OperatorCommand): CoreState {
    if (this.failover === undefined) throw new Error('failover is disabled (failover.enabled: false)');
    return this.failover.operator(op);
  }

  private refreshRoutes(): void {
    const cluster = this.cluster();
    if (cluster === undefined) return;
    this.router.update(this.monitor.snapshot(), cluster, this.failover?.writeGate());
    if (this.failover) this.metrics.onCore(this.failover.state, this.nodeNames);
  }
}


function createManagers(config: Config, log: Logger): Map<string, NodeManager> {
  const { monitor, management } = config;
  const managed = config.nodes.some((n) => n.dataDir !== null || Object.values(n.commands).some((c) => c !== null));
  if (!managed) return new Map();
  const ctx: ManagementContext = {
    // Only local nodes need them; a missing binDir is reported when such a node is operated on.
    binaries: management.binDir !== null ? pgBinariesAt(management.binDir) : findPgBinaries(),
    credentials: { user: monitor.user, password: monitor.password, database: monitor.database },
    replication: { user: management.replicationUser ?? monitor.user, password: management.replicationPassword },
    log,
    rejoinTimeoutMs: management.rejoinTimeoutMs,
  };
  const managers = new Map<string, NodeManager>();
  config.nodes.forEach((node, index) => {
    const manager = managerFor(node, ctx, index);
    if (manager !== undefined) managers.set(node.name, manager);
  });
  return managers;
}
