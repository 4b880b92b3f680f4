// GET /status: the cluster as pgfloat sees it, in one JSON document.

import type { CoreState } from '../failover/types';
import { roleOf, type NodeHealth } from '../monitor/observation';
import type { MoveCounts, RelaySnapshot, WorkerStatus } from '../proxy/relay-plane';
import type { Routes } from '../routing/routes';
import type { ClusterState, FailoverRecord } from '../cluster/state';
import type { InstanceStatus } from '../state/etcd-coordinator';
import type { OperationRecord } from '../operations/operations';
import { receiveLagOf, replayLagOf } from '../failover/helpers';
import type { NodeAddress } from '../cluster/node';
import type { TlsState } from '../postgres/connect';
import { DEFAULT_SERVER_TLS, type ServerTlsMode } from '../postgres/server-tls';

export interface NodeStatus {
  name: string;
  host: string;
  port: number;
  health: string;
  role: string;
  fenced: boolean;
  roguePrimary: boolean;
  sessions: number;
  systemIdentifier: string | null;
  timeline: number | null;
  lsn: string | null;
  /** WAL the primary had written when last seen that this standby has not received: what a failover to it would lose. */
  receiveLagBytes: number | null;
  /** ... that it has not replayed: how far behind its readers are. */
  replayLagBytes: number | null;
  replayDelaySeconds: number | null;
  walReceiver: string | null;
  heartbeatMs: number | null;
  lastError: string | null;
  lastSeenAt: string | null;
  /**
   * pgfloat's own connection to the node (serverTls): the mode, what the monitor's last attempt
   * negotiated, and when TLS kept it from connecting (a refused certificate), which check failed.
   */
  tls: NodeTlsStatus;
}

export interface NodeTlsStatus {
  mode: ServerTlsMode;
  /** unknown: no attempt got as far as TLS (no server, a timeout) since the last connection closed. */
  state: TlsState;
  error: string | null;
}

export interface PgfloatStatus {
  startedAt: string;
  epoch: number;
  primary: string | null;
  standbys: string[];
  readWrite: string;
  splitBrain: boolean;
  /** What the failover core is doing: bootstrap, split-brain, steady, failover (with its step), failed. */
  phase: string;
  /** Why a failover that seems needed is not happening (lag, witness, no candidate). */
  failoverBlocked: string | null;
  writesHeld: boolean;
  writesHeldBecause: string | null;
  /** Read-write clients waiting while writes are held (writesHeldBecause says why). */
  heldClients: number;
  /** Clients whose server refused them, waiting for routing to change (a primary that just died, say). */
  reroutingClients: number;
  /** One server left after a failover, until the old primary is rejoined. */
  degenerate: boolean;
  degenerateSince: string | null;
  lastFailover: FailoverRecord | null;
  /** How the last failover or switchover this instance ran ended (ok, or why not). */
  lastOutcome: { planned: boolean; ok: boolean; message: string; at: string } | null;
  /** The long operation running now (switchover, failover, rejoin), with its latest step. */
  operation: { id: string; kind: string; node: string | null; startedAt: string; lastStep: string | null } | null;
  /** synchronous_standby_names lifted on a new primary that no standby streams from yet. */
  synchronousLifted: { node: string; names: string; since: string } | null;
  clients: { readWrite: number; readOnly: number };
  /** sessions.move: sessions moving now, moved so far, and closed because they could not move, by reason. */
  sessionMoves: MoveCounts;
  /** proxy.workers > 1: each relay worker, its sessions and restarts; null when the relay runs in the control process. */
  workers: WorkerStatus[] | null;
  nodes: NodeStatus[];
  /** Several instances (state.store etcd): each one, its view of the nodes, and which decides. */
  instances: InstanceStatus[] | null;
  /** This instance's lease: without it, it routes no writes. */
  coordination: { instance: string; decider: string | null; connected: boolean; reason: string | null } | null;
}

export interface StatusSources {
  startedAt: Date;
  nodes: readonly NodeAddress[];
  routes: Routes;
  health: readonly NodeHealth[];
  cluster: ClusterState | undefined;
  /** The failover core's state; with failover disabled it only judges routes, and its failover fields are not shown. */
  core: CoreState | undefined;
  automatic: boolean;
  relay: RelaySnapshot;
  operation: OperationRecord | undefined;
  instance: string | undefined;
  instances: InstanceStatus[] | undefined;
}

export function buildStatus(src: StatusSources): PgfloatStatus {
  const { routes, cluster } = src;
  const core = src.automatic ? src.core : undefined;
  const { relay } = src;
  const phase = core === undefined ? 'failover disabled' : core.phase.kind === 'failover' ? `failover: ${core.phase.step}` : core.phase.kind;
  return {
    startedAt: src.startedAt.toISOString(),
    epoch: cluster?.epoch ?? 0,
    primary: routes.primary ?? null,
    standbys: routes.standbys,
    readWrite: routes.primary ? 'routing' : `refusing: ${routes.readWriteRefusal?.message ?? 'unknown'}`,
    splitBrain: routes.readWriteRefusal?.reason === 'split-brain',
    phase,
    failoverBlocked: core?.blocked ?? null,
    writesHeld: core?.heldBecause !== undefined,
    writesHeldBecause: core?.heldBecause ?? null,
    heldClients: relay.heldClients,
    reroutingClients: relay.reroutingClients,
    degenerate: core?.degenerateSince !== undefined,
    degenerateSince: core?.degenerateSince === undefined ? null : new Date(core.degenerateSince).toISOString(),
    lastFailover: cluster?.history.at(-1) ?? null,
    lastOutcome: core?.lastOutcome
      ? { planned: core.lastOutcome.planned, ok: core.lastOutcome.ok, message: core.lastOutcome.message, at: new Date(core.lastOutcome.at).toISOString() }
      : null,
    operation: src.operation
      ? { id: src.operation.id, kind: src.operation.kind, node: src.operation.node, startedAt: src.operation.startedAt, lastStep: src.operation.steps.at(-1)?.message ?? null }
      : null,
    synchronousLifted: cluster?.synchronousLifted ? { node: cluster.synchronousLifted.node, names: cluster.synchronousLifted.names, since: cluster.synchronousLifted.since } : null,
    clients: { ...relay.clients },
    sessionMoves: relay.moves,
    workers: relay.workers,
    nodes: src.nodes.map((n) =>
      nodeStatus(n, src.health.find((h) => h.node === n.name)!, cluster, src.core, relay.byNode[n.name] ?? 0),
    ),
    instances: src.instances ?? null,
    coordination:
      core?.coordination === undefined || src.instance === undefined
        ? null
        : {
            instance: src.instance,
            decider: core.coordination.deciderName ?? null,
            connected: core.coordination.connected,
            reason: core.coordination.disconnectedReason ?? null,
          },
  };
}

function nodeStatus(
  node: NodeAddress,
  health: NodeHealth,
  cluster: ClusterState | undefined,
  core: CoreState | undefined,
  sessions: number,
): NodeStatus {
  const seen = health.lastReachable;
  const lsn = seen?.inRecovery ? seen.replayLsn : seen?.currentLsn;
  return {
    name: node.name,
    host: node.host,
    port: node.port,
    health: health.status,
    role: roleOf(health),
    fenced: cluster?.fenced.includes(node.name) ?? false,
    roguePrimary: core?.roguePrimaries.includes(node.name) ?? false,
    sessions,
    systemIdentifier: seen?.systemIdentifier ?? null,
    timeline: seen?.timeline ?? null,
    lsn: lsn ?? null,
    receiveLagBytes: (core && receiveLagOf(core, node.name)) ?? null,
    replayLagBytes: (core && replayLagOf(core, node.name)) ?? null,
    replayDelaySeconds: seen?.replayDelaySeconds ?? null,
    walReceiver: seen?.walReceiverStatus ?? null,
    heartbeatMs: health.last?.reachable && health.last.latencyMs !== undefined ? Math.round(health.last.latencyMs * 100) / 100 : null,
    lastError: health.last?.reachable === false ? (health.last.error ?? null) : null,
    lastSeenAt: seen ? new Date(seen.at).toISOString() : null,
    tls: {
      mode: (node.tls ?? DEFAULT_SERVER_TLS).mode,
      state: health.last?.tls?.state ?? 'unknown',
      error: health.last?.tls?.error ?? null,
    },
  };
}
