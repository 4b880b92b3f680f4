// A database node as every layer names it: where it is, how healthy it looks, where its WAL stands.

/** libpq's sslmode values, as serverTls.mode takes them; postgres/server-tls.ts says what each does. */
export const SERVER_TLS_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type ServerTlsMode = (typeof SERVER_TLS_MODES)[number];

/** A node's merged serverTls; file paths, so it travels to relay workers as is. Defined here, the lowest layer, so config and postgres both build on it. */
export interface ServerTlsPolicy {
  mode: ServerTlsMode;
  ca: string | null;
  cert: string | null;
  key: string | null;
}

/** Where a configured node is reached; `name` is the one the configuration gives it. */
export interface NodeAddress {
  name: string;
  host: string;
  port: number;
  /** How pgfloat's connections to it use TLS (config serverTls with the node's own on top); libpq's `prefer` when unset. */
  tls?: ServerTlsPolicy;
}

/** up: last heartbeat answered; suspect: missed some; down: missed failuresBeforeDown in a row. */
export type HealthStatus = 'unknown' | 'up' | 'suspect' | 'down';

/** What a heartbeat learns of a node's role and WAL positions; the monitor and the failover core share it. */
export interface NodePositions {
  inRecovery?: boolean;
  systemIdentifier?: string;
  timeline?: number;
  /** pg_current_wal_lsn() on a primary. */
  currentLsn?: string;
  /** pg_last_wal_receive_lsn() on a standby: WAL it holds and will replay when promoted. */
  receiveLsn?: string;
  /** pg_last_wal_replay_lsn() on a standby: how far a promotion would start from, and what its readers see. */
  replayLsn?: string;
}
