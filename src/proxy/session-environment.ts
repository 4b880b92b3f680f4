// What the relay gives each of its client sessions: routing, its registries and counters, settings, and where events are counted.

import type { NodeAddress } from '../cluster/node';
import type { Logger } from '../log';
import type { Refusal } from '../protocol/refusal';
import type { ListenerKind } from '../routing/routes';
import type { Router } from '../routing/router';
import type { RoutingRules } from '../routing/rules';
import type { BusyPoller } from './busy-poll';
import type { CancelRegistry } from './cancel-registry';
import type { RelayCounters } from './relay';
import type { SessionRegistry } from './session-registry';
import type { ClientTls } from './tls';
import type { MoveEvent, MoveSettings } from './session-move';

export interface SessionEnvironment {
  router: Router;
  rules: RoutingRules;
  nodes: ReadonlyMap<string, NodeAddress>;
  cancels: CancelRegistry;
  sessions: SessionRegistry;
  counters: RelayCounters;
  /** Client-facing TLS (its certificate reloadable), when `tls` is configured. */
  tls: ClientTls | undefined;
  startupTimeoutMs: number;
  connectTimeoutMs: number;
  keepaliveIdleMs: number;
  /** How long a read-write client may wait for a primary (failover.holdMs). */
  holdMs: number;
  busyPoller: BusyPoller | undefined;
  log: Logger;
  onRefused(listener: ListenerKind, refusal: Refusal): void;
  /** A server refused or dropped a connection attempt: worth a heartbeat now. */
  onServerUnreachable(node: string): void;
  onEstablished(listener: ListenerKind, route: ListenerKind, node: string): void;
  /** A cancel request for a key no session here holds: with workers, another worker's session may. */
  cancelElsewhere?: ((processId: number, secretKey: Buffer) => void) | undefined;
  /** The auth query's answer for a role, asked of `node` (sessions.authQuery): moves, and SCRAM logins re-signed for a TLS server (auth-bridge). */
  rolePassword?: ((user: string, node: string) => Promise<string | null>) | undefined;
  /** Set when sessions leaving a switched-over or fenced node move to the new one (sessions.move). */
  move: MoveSettings | undefined;
  onMove(event: MoveEvent): void;
}
