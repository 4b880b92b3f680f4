// Composes one pgfloat instance: state store, monitor, failover runner, router, proxy listeners and admin API.

import { nodeAddress } from '../config/nodes';
import type { NodeAddress } from '../cluster/node';
import type { ClusterState } from '../cluster/state';
import type { ListenAddress } from '../config/address';
import type { Config } from '../config/schema';
import { failoverFinished } from '../failover/outcome';
import type { CoreState, FailoverOptions, OperatorCommand } from '../failover/types';
import type { Logger } from '../log';
import { AdminServer, type AdminOperation } from '../admin/http-server';
import { Metrics } from '../admin/metrics';
import { buildStatus, type PgfloatStatus } from '../admin/status';
import { managersFor } from '../management/node-manager';
import { reportOf } from '../monitor/report';
import { Monitor } from '../monitor/monitor';
import { Operations } from '../operations/operations';
import * as procedures from '../operations/procedures';
import { RolePasswords } from '../postgres/role-passwords';
import { ServerAdmin } from '../postgres/server-admin';
import { AggregatorRegistry } from 'prom-client';
import { LocalRelay, relaySettingsOf } from '../proxy/local-relay';
import { ProxyServer } from '../proxy/proxy-server';
import type { RelayPlane } from '../proxy/relay-plane';
import { reloadAnswer, type ReloadAnswer } from '../admin/reload';
import { Router } from '../routing/router';
import { computeRoutes, type ListenerKind, type RouteOptions } from '../routing/routes';
import { relayLoops } from '../workers/worker-count';
import { WorkerPool } from '../workers/worker-pool';
import { createStateBackend, loadInitialState, type StateBackend } from '../state/backend';
import { systemClock } from './effects';
import { FailoverRunner } from './failover-runner';
import { Fencing } from './fencing';
import { ServerActions } from './server-actions';
import { SynchronousGuard } from './synchronous-guard';

export class Pgfloat {
  readonly monitor: Monitor;
  readonly router: Router;
  /** The relay: in this process, or in proxy.workers worker processes. */
  readonly relay: RelayPlane;
  readonly metrics: Metrics;
  readonly operations: Operations;
  private readonly backend: StateBackend;
  private readonly proxy: ProxyServer;
  private readonly admin: AdminServer | undefined;
  private readonly nodes: Map<string, NodeAddress>;
  private readonly nodeNames: string[];
  private readonly serverAdmin: ServerAdmin;
  private readonly rolePasswords: RolePasswords;
  private readonly synchronous: SynchronousGuard;
  private readonly managers: ReturnType<typeof managersFor>;
  private readonly failoverOptions: FailoverOptions;
  private readonly routeOptions: RouteOptions;
  private readonly startedAt = new Date();
  private runner: FailoverRunner | undefined;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.nodes = new Map(config.nodes.map((n) => [n.name, nodeAddress(config, n)]));
    this.nodeNames = config.nodes.map((n) => n.name);
    const { failover, switchover } = config;
    this.failoverOptions = {
      ...failover,
      automatic: failover.enabled,
      switchover,
      notPromotable: config.nodes.filter((n) => !n.promotable).map((n) => n.name),
    };
    this.routeOptions = { automatic: failover.enabled, maxLagBytes: config.readOnly.maxLagBytes };
    this.operations = new Operations(log.child({ component: 'operations' }));
    this.serverAdmin = new ServerAdmin(config.monitor, Math.min(config.proxy.connectTimeoutMs, config.monitor.timeoutMs * 2));
    this.rolePasswords = new RolePasswords(this.nodes, config.monitor, config.sessions.authQuery, {
      connectTimeoutMs: config.proxy.connectTimeoutMs,
      queryTimeoutMs: config.sessions.moveTimeoutMs,
    });
    this.synchronous = new SynchronousGuard(this.serverAdmin, failover.keepSynchronousWhenAlone, failover.promoteTimeoutMs, log.child({ component: 'synchronous' }));
    this.managers = managersFor(config, log.child({ component: 'management' }));
    this.backend = createStateBackend(config, log.child({ component: 'etcd' }));
    this.monitor = new Monitor([...this.nodes.values()], { ...config.monitor }, log.child({ component: 'monitor' }));
    this.router = new Router({ fallbackToPrimary: config.readOnly.fallbackToPrimary, holdMs: failover.holdMs }, log.child({ component: 'router' }));
    this.metrics = new Metrics(this.nodeNames);
    this.relay = this.createRelay();
    this.proxy = new ProxyServer({ listen: this.listeners(), maxClientConnections: config.proxy.maxClientConnections }, this.relay, log.child({ component: 'proxy' }));
    this.admin = config.admin.listen ? this.adminServer(config.admin.listen, config.admin.token ?? undefined) : undefined;
    this.monitor.on('heartbeat', (health, observation) => {
      this.metrics.onHeartbeat(health, observation);
      this.runner?.report(reportOf(health, failover.standbyConfirmationMs));
    });
    this.router.on('change', (routes) => this.metrics.onRoutes(routes, this.nodeNames));
  }

  async start(): Promise<void> {
    const runner = (this.runner = this.createRunner(await loadInitialState(this.backend, this.config.state.dir, this.log)));
    const coordinator = this.backend.coordinator;
    if (coordinator) {
      coordinator.on('coordination', (c) => runner.onCoordination(c));
      coordinator.on('cluster', (c) => runner.onClusterChanged(c));
      // Waits a lease's length at most: an instance that cannot reach etcd still serves reads.
      await coordinator.start(this.config.state.etcd!.leaseTtlSeconds * 1000);
    }
    // One round of heartbeats before listening, so the first clients are not refused for lack of a view.
    await this.monitor.probeAll();
    await runner.settled();
    runner.start();
    if (this.relay instanceof WorkerPool) await this.relay.launch();
    await this.proxy.start();
    await this.admin?.start();
    const admin = this.admin?.address();
    if (admin) coordinator?.setAdmin(`http://${admin.host.includes(':') ? `[${admin.host}]` : admin.host}:${admin.port}`);
    this.monitor.start();
    this.synchronous.watch(
      () => {
        const core = runner.state;
        const lifted = core.cluster.synchronousLifted;
        const primary = core.phase.kind === 'steady' && core.coordination?.decider !== false ? core.cluster.primary : undefined;
        return lifted !== undefined && primary === lifted.node ? { primary: this.nodes.get(primary)!, lifted } : undefined;
      },
      (node) => runner.onSynchronousRestored(node),
    );
  }

  async stop(): Promise<void> {
    this.synchronous.stop();
    this.runner?.stop();
    this.monitor.stop();
    await this.proxy.stop();
    // Only once its sessions are gone: revoking the lease lets the others stop waiting for this instance.
    await this.backend.coordinator?.stop();
    await this.admin?.stop();
  }

  /**
   * SIGHUP and POST /reload: every process re-reads the TLS files (client-facing certificate, key
   * and CA; the server-side files at their next use). Open sessions keep what they negotiated; a
   * loop whose new files are unusable keeps its previous certificate.
   */
  async reload(requestedBy: string): Promise<ReloadAnswer> {
    const answer = reloadAnswer(await this.relay.reloadTls(), this.config.tls !== null);
    const fields = { requestedBy, loops: answer.loops.length, certificate: answer.certificate };
    if (answer.reloaded) this.log.info(fields, answer.message);
    else this.log.error({ ...fields, failed: answer.loops.filter((l) => !l.ok) }, answer.message);
    return answer;
  }

  address(kind: ListenerKind | 'admin'): ListenAddress | undefined {
    return kind === 'admin' ? this.admin?.address() : this.proxy.address(kind);
  }

  status(): PgfloatStatus {
    const core = this.runner?.state;
    return buildStatus({
      startedAt: this.startedAt,
      nodes: [...this.nodes.values()],
      routes: this.router.current(),
      health: this.monitor.snapshot(),
      cluster: this.cluster(),
      core,
      automatic: this.failoverOptions.automatic,
      relay: this.relay.snapshot(),
      operation: this.operations.current?.record,
      instance: this.backend.instance,
      instances: this.backend.coordinator?.instances(),
    });
  }

  /** The cluster state as last persisted (the failover core's copy). */
  cluster(): ClusterState | undefined {
    return this.runner?.state.cluster;
  }

  /** Operator commands go to the failover core; with failover disabled they are refused. */
  operator(op: OperatorCommand): CoreState {
    if (this.runner === undefined || !this.failoverOptions.automatic) throw new Error('failover is disabled (failover.enabled: false)');
    return this.runner.operator(op);
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

  private createRunner(cluster: ClusterState): FailoverRunner {
    const fencing = new Fencing(this.config.fencing, this.serverAdmin);
    const servers = new ServerActions({
      nodes: this.nodes,
      admin: this.serverAdmin,
      fencing,
      synchronous: this.synchronous,
      promoteTimeoutMs: this.config.failover.promoteTimeoutMs,
      control: (node) => this.managers.get(node),
      expedite: (node) => this.monitor.expedite(node),
    });
    return new FailoverRunner(
      {
        options: this.failoverOptions,
        names: this.nodeNames,
        clock: systemClock,
        store: this.backend.store,
        sessions: this.relay,
        servers,
        log: this.log.child({ component: 'failover' }),
        route: (core) => this.relay.publish(computeRoutes(core, this.routeOptions)),
        stepped: (core, previous) => {
          const finished = failoverFinished(previous, core);
          if (finished !== undefined) this.metrics.onFailover(finished);
          this.metrics.onCore(core, this.nodeNames);
          // The applied revision tells the other instances this one's sessions to fenced nodes are gone.
          this.backend.coordinator?.publish(Object.fromEntries(this.monitor.snapshot().map((h) => [h.node, h.status])), core.appliedRevision);
        },
        fenced: (node, result) => this.metrics.onFencing(node, result),
        progress: (_level, message) => {
          const op = this.operations.current;
          if (op !== undefined && op.record.kind !== 'rejoin') op.progress(message);
        },
      },
      cluster,
      this.backend.coordinator?.coordination(),
    );
  }

  private procedureContext(): procedures.ProcedureContext {
    const { switchover, fencing, failover, management } = this.config;
    const runner = this.failoverOptions.automatic ? this.runner : undefined;
    return {
      operations: this.operations,
      nodes: this.nodes,
      admin: this.serverAdmin,
      core: () => runner?.state,
      command: (op) => {
        if (runner === undefined) return { accepted: false, message: 'refused: failover is disabled (failover.enabled: false)' };
        return runner.operator(op).operatorAnswer ?? { accepted: false, message: 'no answer' };
      },
      waitForCore: (predicate, timeoutMs, what) => (runner ? runner.waitFor(predicate, timeoutMs, what) : Promise.reject(new Error('failover is disabled'))),
      manager: (node) => this.managers.get(node),
      expedite: (node) => this.monitor.expedite(node),
      outcomeTimeoutMs: switchover.drainMs + 2 * fencing.timeoutMs + switchover.catchUpTimeoutMs + failover.promoteTimeoutMs + 30_000,
      rejoinTimeoutMs: management.rejoinTimeoutMs,
      adminTimeoutMs: Math.max(this.config.monitor.timeoutMs * 2, 5_000),
    };
  }

  private listeners(): Partial<Record<ListenerKind, ListenAddress>> {
    const listen: Partial<Record<ListenerKind, ListenAddress>> = { readWrite: this.config.listen.readWrite };
    if (this.config.listen.readOnly) listen.readOnly = this.config.listen.readOnly;
    return listen;
  }

  private createRelay(): RelayPlane {
    const settings = relaySettingsOf(this.config);
    const loops = relayLoops(this.config.proxy.workers);
    const expedite = (node: string): void => this.monitor.expedite(node);
    const rolePassword = (user: string, node: string): Promise<string | null> => this.rolePasswords.lookup(user, node);
    if (loops === 1) {
      return new LocalRelay(settings, this.router, this.metrics.registry, this.log.child({ component: 'proxy' }), { onServerUnreachable: expedite, rolePassword });
    }
    // Workers log at this logger's level (a test's silent one too), each line with its slot.
    return new WorkerPool(settings, loops, this.router, this.log.level, this.log.child({ component: 'workers' }), {
      expedite,
      rolePassword,
      workers: (live, exited) => this.metrics.onWorkers(live, exited),
    }, { registry: this.metrics.registry });
  }

  /** This process's metrics, with every worker's summed in (prom-client's aggregation for cluster workers). */
  private async metricsText(): Promise<string> {
    const workers = await this.relay.workerMetrics();
    if (workers.length === 0) return this.metrics.registry.metrics();
    return AggregatorRegistry.aggregate([await this.metrics.registry.getMetricsAsJSON(), ...workers]).metrics();
  }

  private adminServer(listen: ListenAddress, token: string | undefined): AdminServer {
    return new AdminServer(
      listen,
      {
        status: () => this.status(),
        metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metricsText() }),
        nodeNames: () => this.nodeNames,
        roles: () => ({ primary: this.router.current().primary, standbys: this.router.current().standbys }),
        operate: (op) => this.operate(op),
        operation: (id) => this.operations.get(id),
        operations: () => this.operations.list(),
        reload: () => this.reload('admin API'),
      },
      this.log.child({ component: 'admin' }),
      token,
    );
  }
}
