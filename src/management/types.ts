// Managed nodes: what pgfloat can do to a server itself (stop, start, rejoin as a standby), and what that needs.

import type { NodeAddress } from '../cluster/node';
import type { NodeConfig } from '../config/schema';
import type { Logger } from '../log';
import type { AdminCredentials } from '../postgres/admin-session';
import type { PgBinaries } from '../postgres/binaries';
import type { ServerTlsConfig } from '../config/schema';

/** What managing a node needs from its configuration; without serverTls, the top-level one applies. */
export type ManagedNodeConfig = Pick<NodeConfig, 'name' | 'host' | 'port' | 'dataDir' | 'commands'> & Partial<Pick<NodeConfig, 'serverTls'>>;

export interface ManagementContext {
  /** PostgreSQL binaries for local nodes (pg_ctl, pg_rewind, pg_basebackup, postgres); undefined: local operations fail saying so. */
  binaries: PgBinaries | undefined;
  /** The admin/monitor role: CHECKPOINT on the primary, and watching the rejoined node's WAL receiver. */
  credentials: AdminCredentials;
  /** The role pg_rewind, pg_basebackup and the standby's primary_conninfo use (management.replicationUser). */
  replication: { user: string; password: string };
  log: Logger;
  /** The top-level serverTls (libpq's prefer when unset): with a node's own keys on top, how SQL and tools reach it. */
  serverTls?: ServerTlsConfig;
  /** Default budget of a rejoin (management.rejoinTimeoutMs); 30 minutes when unset. */
  rejoinTimeoutMs?: number;
  /** Budget of a stop or a start, hooks included; 2 minutes when unset. */
  stopStartTimeoutMs?: number;
}

/** Receives one line per step, for the operator. */
export type Progress = (message: string) => void;

/** How a rejoin made the node a standby: pg_rewind, a fresh pg_basebackup, or the operator's rejoin hook. */
export type RejoinMethod = 'rewound' | 'rebuilt' | 'command';

export interface RejoinOptions {
  /** Skip pg_rewind and clone the primary with pg_basebackup (local), or PGFLOAT_REBUILD=1 (hooks). */
  rebuild: boolean;
  /** Overrides ManagementContext.rejoinTimeoutMs for this rejoin. */
  timeoutMs?: number;
}

export interface NodeManager {
  readonly node: string;
  readonly kind: 'local' | 'commands';
  /** Clean, fast shutdown (pg_ctl stop -m fast); resolves when stopped; fine if already stopped. */
  stop(progress: Progress): Promise<void>;
  /** Starts it with its own port; resolves when it accepts connections. */
  start(progress: Progress): Promise<void>;
  /**
   * Turns the node into a streaming standby of `primary` (stopping it first), and resolves once it
   * streams on the primary's current timeline. See rejoin.ts for a local node, command-hooks.ts for hooks.
   */
  rejoin(primary: NodeAddress, options: RejoinOptions, progress: Progress): Promise<RejoinMethod>;
}

