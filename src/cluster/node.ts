// A database node as every layer names it: where it is, how healthy it looks, where its WAL stands.

/** libpq's sslmode values, which serverTls takes. */
export type ServerTlsMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

/** How pgfloat's connections to a node use TLS: config serverTls with the node's own keys on top. File paths, so it travels to relay workers as is. */
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
  /** libpq's `prefer` without files when unset. */
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
