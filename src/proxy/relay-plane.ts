// What the control plane (failover runner, listeners, status, metrics) sees of the relay, whether it runs in this process or in workers.

import type { Socket } from 'node:net';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Refusal } from '../protocol/refusal';
import type { CertificateSummary } from './tls';
import type { ListenerKind, Routes } from '../routing/routes';
import type { DrainResult } from './session-registry';

/** Session counts of one event loop, or of all of them added up. */
export interface RelayCounts {
  /** Sessions open, from accept to close (refused ones included until they are closed). */
  open: number;
  clients: Record<ListenerKind, number>;
  /** Sessions with a server on each node. */
  byNode: Record<string, number>;
  /** Read-write clients waiting while writes are held. */
  heldClients: number;
  /** Clients waiting for routing to change after their server refused them. */
  reroutingClients: number;
  clientToServerBytes: number;
  serverToClientBytes: number;
  /** BackendKeyData held for cancel requests. */
  cancelKeys: number;
  /** sessions.move: sessions moving now, moved so far, and not moved (closed) by reason. */
  moves: MoveCounts;
}

export interface MoveCounts {
  moving: number;
  moved: number;
  notMoved: Record<string, number>;
}

export interface WorkerStatus {
  /** 1..proxy.workers: a restarted worker keeps its slot. */
  slot: number;
  pid: number | null;
  state: 'starting' | 'ready' | 'stopped';
  sessions: number;
  /** Times the slot's process ended unasked and was started again. */
  restarts: number;
  relayedBytes: number;
}

export interface RelaySnapshot extends RelayCounts {
  /** proxy.workers > 1: each worker; null when the relay runs in the control process. */
  workers: WorkerStatus[] | null;
}

export type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

/**
 * The relay as one thing. `publish` and the SessionEffects reach every event loop; the counts
 * are the sum over them. With workers, drops and drains resolve only once every worker answered
 * (or was killed, which ends its sessions as surely).
 */
export interface RelayPlane {
  /** Event loops relaying: 1, or proxy.workers. */
  readonly loops: number;
  /** The listener hands sockets on to another process: it must not read from them. */
  readonly handsOff: boolean;
  /**
   * Ends every session on `node` in every loop; resolves with how many there were once all of
   * them did (the failover runner's SessionEffects). Never rejects.
   */
  dropNode(node: string, refusal: Refusal): Promise<number>;
  /** Closes `node`'s sessions at transaction boundaries in every loop, cutting the rest after `drainMs`. */
  drainNode(node: string, refusal: Refusal, drainMs: number): Promise<DrainResult>;
  /** The routing decision; every loop takes it before any later drop or drain reaches it. */
  publish(routes: Routes): void;
  /** Sessions open in every loop (sockets on their way to a worker included): what connection limits count. */
  open(): number;
  /** An accepted client: relay it, or refuse it with `refusal` after its startup packet. */
  start(listener: ListenerKind, socket: Socket, refusal?: Refusal): void;
  snapshot(): RelaySnapshot;
  /** The workers' own metrics, to be summed with this process's; empty without workers. */
  workerMetrics(): Promise<WorkerMetrics[]>;
  /** Ends every session with `refusal` (pgfloat stopping) and stops the workers. */
  stop(refusal: Refusal): Promise<void>;
  /**
   * Every loop re-reads the client-facing TLS files (and forgets the server-side ones it read);
   * resolves with each loop's outcome once all answered. Never rejects.
   */
  reloadTls(): Promise<TlsReloadReport[]>;
}

/** One event loop's reload: `ok` false keeps its previous certificate. Without `tls` there is no certificate to report. */
export interface TlsReloadReport {
  /** "control", or "worker N". */
  loop: string;
  ok: boolean;
  reason?: string;
  certificate?: CertificateSummary;
}

export function emptyCounts(): RelayCounts {
  return {
    open: 0,
    clients: { readWrite: 0, readOnly: 0 },
    byNode: {},
    heldClients: 0,
    reroutingClients: 0,
    clientToServerBytes: 0,
    serverToClientBytes: 0,
    cancelKeys: 0,
    moves: { moving: 0, moved: 0, notMoved: {} },
  };
}

/** Adds `b` into `a`. */
export function addCounts(a: RelayCounts, b: RelayCounts): RelayCounts {
  a.open += b.open;
  a.clients.readWrite += b.clients.readWrite;
  a.clients.readOnly += b.clients.readOnly;
  for (const [node, n] of Object.entries(b.byNode)) a.byNode[node] = (a.byNode[node] ?? 0) + n;
  a.heldClients += b.heldClients;
  a.reroutingClients += b.reroutingClients;
  a.clientToServerBytes += b.clientToServerBytes;
  a.serverToClientBytes += b.serverToClientBytes;
  a.cancelKeys += b.cancelKeys;
  a.moves.moving += b.moves.moving;
  a.moves.moved += b.moves.moved;
  for (const [reason, n] of Object.entries(b.moves.notMoved)) a.moves.notMoved[reason] = (a.moves.notMoved[reason] ?? 0) + n;
  return a;
}
