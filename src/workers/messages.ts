// The messages between the control process and its relay workers (proxy.workers > 1), over the cluster IPC channel.
//
// One channel per worker delivers in order, which the fence relies on: a worker takes a routing
// decision before any drop the same step asks for, and a socket handed over before a drop is a
// session of that worker when the drop arrives.

import type { RelaySettings } from '../proxy/local-relay';
import type { RelayCounts, TlsReloadReport, WorkerMetrics } from '../proxy/relay-plane';
import type { Refusal } from '../protocol/refusal';
import type { ListenerKind, Routes } from '../routing/routes';

export type ToWorker =
  | { t: 'init'; slot: number; settings: RelaySettings; logLevel: string; routes: Routes }
  | { t: 'routes'; routes: Routes }
  /** Comes with the client socket as the handle. */
  | { t: 'client'; listener: ListenerKind; refusal?: Refusal }
  | { t: 'drop'; id: number; node: string; refusal: Refusal }
  | { t: 'drain'; id: number; node: string; refusal: Refusal; drainMs: number }
  /** A cancel request another worker received: forward it if one of this worker's sessions holds the key. */
  | { t: 'cancel'; processId: number; secretKey: string }
  | { t: 'metrics'; id: number }
  /** SIGHUP or POST /reload: read the TLS files again. */
  | { t: 'reload-tls'; id: number }
  /** The answer to a worker's role-password request (sessions.move); a secret, so never logged. */
  | { t: 'role-password'; id: number; rolpassword: string | null; error?: string }
  | { t: 'stop'; refusal: Refusal };

export type FromWorker =
  | { t: 'ready' }
  /** Sent whenever they changed (at most every COUNTS_INTERVAL_MS); `received` counts every socket handed to it. */
  | { t: 'counts'; counts: RelayCounts; received: number }
  | { t: 'dropped'; id: number; sessions: number }
  | { t: 'drained'; id: number; atBoundary: number; cut: number }
  | { t: 'metrics'; id: number; metrics: WorkerMetrics }
  | { t: 'tls-reloaded'; id: number; report: TlsReloadReport }
  | { t: 'expedite'; node: string }
  | { t: 'cancel'; processId: number; secretKey: string }
  /** A moving session needs its role's verifier: the control process runs the auth query (workers hold no credentials). */
  | { t: 'role-password'; id: number; user: string; node: string }
  | { t: 'stopped' };

/** How often a worker reports its counts while they change. */
export const COUNTS_INTERVAL_MS = 20;

export function isFromWorker(message: unknown): message is FromWorker {
  return typeof message === 'object' && message !== null && typeof (message as { t?: unknown }).t === 'string';
}

export function isToWorker(message: unknown): message is ToWorker {
  return isFromWorker(message);
}
