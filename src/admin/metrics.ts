// Prometheus metrics: what the monitor and the failover core count, exposed at GET /metrics with the relay's.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { NodeHealth, NodeObservation } from '../monitor/observation';
import { roleOf } from '../monitor/observation';
import type { CoreState } from '../failover/types';
import type { Routes } from '../routing/routes';
import { receiveLagOf, replayLagOf } from '../failover/helpers';
import type { TlsState } from '../postgres/connect';

const TLS_STATES: readonly TlsState[] = ['encrypted', 'plaintext', 'failed', 'unknown'];

export class Metrics {
  readonly registry = new Registry();
  private readonly heartbeat: Histogram<'node'>;
  private readonly nodeUp: Gauge<'node'>;
  private readonly nodeRole: Gauge<'node' | 'role'>;
  private readonly nodeTls: Gauge<'node' | 'state'>;
  private readonly verifiedPrimary: Gauge<'node'>;
  private readonly splitBrain: Gauge;
  private readonly epoch: Gauge;
  private readonly failovers: Counter<'result'>;
  private readonly fencingActions: Counter<'node' | 'result'>;
  private readonly fenced: Gauge<'node'>;
  private readonly rogue: Gauge<'node'>;
  private readonly receiveLag: Gauge<'node'>;
  private readonly replayLag: Gauge<'node'>;
  private readonly degenerate: Gauge;
  private readonly writesHeld: Gauge;
  private readonly leaseHeld: Gauge;
  private readonly decider: Gauge;
  private readonly liveInstances: Gauge;
  private readonly workerExits: Counter;
  private readonly liveWorkers: Gauge;

  /** The control plane's metrics (monitor, failover core, routes); the relay's are RelayMetrics, in the same registry or per worker. */
  constructor(nodeNames: readonly string[]) {
    const registers = [this.registry];
    // File descriptors and memory: what a leak would show first.
    collectDefaultMetrics({ register: this.registry, prefix: 'pgfloat_' });
    this.heartbeat = new Histogram({
      name: 'pgfloat_heartbeat_seconds',
      help: 'Heartbeat round-trip time per node (answered heartbeats only)',
      labelNames: ['node'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.nodeUp = new Gauge({ name: 'pgfloat_node_up', help: '1 when the node answers heartbeats', labelNames: ['node'], registers });
    this.nodeRole = new Gauge({
      name: 'pgfloat_node_role',
      help: '1 for the role the node was last seen in (primary, standby, unknown)',
      labelNames: ['node', 'role'],
      registers,
    });
    this.nodeTls = new Gauge({
      name: 'pgfloat_node_tls',
      help: "1 for what pgfloat's last heartbeat connection to the node negotiated (encrypted, plaintext), or failed (a refused certificate: alert), or unknown",
      labelNames: ['node', 'state'],
      registers,
    });
    this.verifiedPrimary = new Gauge({
      name: 'pgfloat_verified_primary',
      help: '1 for the node read-write clients are routed to',
      labelNames: ['node'],
      registers,
    });
    this.splitBrain = new Gauge({ name: 'pgfloat_split_brain', help: '1 while more than one node claims to be primary', registers });
    this.epoch = new Gauge({ name: 'pgfloat_epoch', help: 'The cluster epoch: grows by one at every promotion', registers });
    this.failovers = new Counter({ name: 'pgfloat_failovers_total', help: 'Failovers finished, by result (success, failure)', labelNames: ['result'], registers });
    this.fencingActions = new Counter({
      name: 'pgfloat_fencing_actions_total',
      help: 'Fencing actions (fencing.action) run on a node, by result: applied, unreachable (sql found no server), failed',
      labelNames: ['node', 'result'],
      registers,
    });
    this.fenced = new Gauge({ name: 'pgfloat_node_fenced', help: '1 while the node is fenced: no client traffic', labelNames: ['node'], registers });
    this.rogue = new Gauge({
      name: 'pgfloat_node_rogue_primary',
      help: '1 while a fenced node runs as a primary (alert: it was restarted outside pgfloat)',
      labelNames: ['node'],
      registers,
    });
    this.receiveLag = new Gauge({
      name: 'pgfloat_receive_lag_bytes',
      help: 'WAL bytes the primary last wrote that a standby has not received: what a failover to it would lose (failover.maxLagBytes)',
      labelNames: ['node'],
      registers,
    });
    this.replayLag = new Gauge({
      name: 'pgfloat_replay_lag_bytes',
      help: 'WAL bytes the primary last wrote that a standby has not replayed: how far behind its readers are (readOnly.maxLagBytes)',
      labelNames: ['node'],
      registers,
    });
    this.degenerate = new Gauge({ name: 'pgfloat_degenerate', help: '1 while the cluster runs on one server after a failover', registers });
    this.writesHeld = new Gauge({ name: 'pgfloat_writes_held', help: '1 while new read-write clients are held (failover, suspect primary)', registers });
    this.leaseHeld = new Gauge({ name: 'pgfloat_etcd_lease', help: 'Several instances: 1 while this instance holds a valid etcd lease (without it, it routes no writes)', registers });
    this.decider = new Gauge({ name: 'pgfloat_decider', help: 'Several instances: 1 while this instance decides failovers', registers });
    this.liveInstances = new Gauge({ name: 'pgfloat_live_instances', help: 'Several instances: live instances this one knows of, itself included', registers });
    this.workerExits = new Counter({
      name: 'pgfloat_relay_worker_exits_total',
      help: 'proxy.workers: relay worker processes that ended unasked (each one restarted; its sessions were lost)',
      registers,
    });
    this.liveWorkers = new Gauge({ name: 'pgfloat_relay_workers', help: 'Relay event loops running now (proxy.workers; 1 when the relay runs in this process)', registers });
    this.liveWorkers.set(1);
    for (const result of ['success', 'failure']) this.failovers.inc({ result }, 0);
    for (const node of nodeNames) {
      this.fenced.set({ node }, 0);
      for (const result of ['applied', 'unreachable', 'failed']) this.fencingActions.inc({ node, result }, 0);
      this.rogue.set({ node }, 0);
      this.nodeUp.set({ node }, 0);
      this.verifiedPrimary.set({ node }, 0);
    }
  }

  onHeartbeat(health: NodeHealth, observation: NodeObservation): void {
    if (observation.reachable && observation.latencyMs !== undefined) {
      this.heartbeat.observe({ node: health.node }, observation.latencyMs / 1000);
    }
    this.nodeUp.set({ node: health.node }, health.status === 'up' ? 1 : 0);
    const role = roleOf(health);
    for (const r of ['primary', 'standby', 'unknown']) this.nodeRole.set({ node: health.node, role: r }, r === role ? 1 : 0);
    const tls = observation.tls?.state ?? 'unknown';
    for (const state of TLS_STATES) this.nodeTls.set({ node: health.node, state }, state === tls ? 1 : 0);
  }

  onRoutes(routes: Routes, nodeNames: readonly string[]): void {
    for (const node of nodeNames) this.verifiedPrimary.set({ node }, routes.primary === node ? 1 : 0);
    this.splitBrain.set(routes.readWriteRefusal?.reason === 'split-brain' ? 1 : 0);
  }

  onCore(core: CoreState, nodeNames: readonly string[]): void {
    this.epoch.set(core.cluster.epoch);
    this.degenerate.set(core.degenerateSince === undefined ? 0 : 1);
    this.writesHeld.set(core.heldBecause !== undefined ? 1 : 0);
    if (core.coordination !== undefined) {
      this.leaseHeld.set(core.coordination.connected ? 1 : 0);
      this.decider.set(core.coordination.decider ? 1 : 0);
      this.liveInstances.set(Object.keys(core.coordination.peers).length + 1);
    }
    for (const node of nodeNames) {
      this.fenced.set({ node }, core.cluster.fenced.includes(node) ? 1 : 0);
      this.rogue.set({ node }, core.roguePrimaries.includes(node) ? 1 : 0);
      setOrRemove(this.receiveLag, node, receiveLagOf(core, node));
      setOrRemove(this.replayLag, node, replayLagOf(core, node));
    }
  }

  onFencing(node: string, result: 'applied' | 'unreachable' | 'failed'): void {
    this.fencingActions.inc({ node, result });
  }

  onFailover(result: 'success' | 'failure'): void {
    this.failovers.inc({ result });
  }

  onWorkers(live: number, exited: boolean): void {
    this.liveWorkers.set(live);
    if (exited) this.workerExits.inc();
  }
}

function setOrRemove(gauge: Gauge<'node'>, node: string, value: number | undefined): void {
  if (value !== undefined) gauge.set({ node }, value);
  else gauge.remove({ node });
}
