// What the pooled load generators (switchover, soak) share: an application-like pool, transactions whose every outcome is logged, and one-off connections.

import { Client, Pool, type DatabaseError, type PoolClient } from 'pg';

/** How far a failed transaction got: only a lost COMMIT leaves its outcome unknown. */
export type Stage = 'begin' | 'update' | 'insert' | 'commit';

export interface Ack {
  at: number;
  client: number;
  seq: number;
  /** Port of the PostgreSQL server that ran it (inet_server_port()), i.e. which node. */
  port: number;
}

export interface Failure {
  at: number;
  client: number;
  seq: number;
  stage: Stage;
  /** SQLSTATE of the ErrorResponse; for a connection lost without one, the FATAL the session got before (see `viaSessionError`), else 'none'. */
  code: string;
  /** The code came from the session's own FATAL (pg's 'error' event), not from the statement's answer. */
  viaSessionError: boolean;
  message: string;
}

export interface ConnectFailure {
  at: number;
  code: string;
  message: string;
}

/** An idle pooled connection that the server (or pgfloat) closed: the pool drops it, no transaction is affected. */
export interface IdleClose {
  at: number;
  code: string;
}

export interface LoadLog {
  acks: Ack[];
  /** Known not committed: failed before COMMIT was sent, or COMMIT answered with a non-FATAL error. */
  failed: Failure[];
  /** COMMIT sent, then the connection was lost (or FATAL): committed or not, the client cannot know. */
  unknown: Failure[];
  connectFailures: ConnectFailure[];
  idleClosed: IdleClose[];
}

/** How a transaction's outcome is judged, for the results' method section. */
export const OUTCOMES_METHOD = 'acknowledged: COMMIT answered; failed: an error before COMMIT was sent, or a non-FATAL error answering it (not committed); unknown: COMMIT sent, then the connection lost or a FATAL';

export const emptyLoadLog = (): LoadLog => ({ acks: [], failed: [], unknown: [], connectFailures: [], idleClosed: [] });

export const codeOf = (err: unknown): string | undefined => (err as Partial<DatabaseError>).code;
const severityOf = (err: unknown): string | undefined => (err as Partial<DatabaseError>).severity;
export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));
export const connectFailure = (err: unknown): ConnectFailure => ({ at: Date.now(), code: codeOf(err) ?? 'none', message: messageOf(err) });

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A pool as an application has: reconnects on demand, waits (not fails) while pgfloat holds new
 * connections. Each session's own FATAL goes to `sessionErrors`, idle sessions closed under it to `idleClosed`.
 */
export function makePool(port: number, max: number, name: string, sessionErrors: WeakMap<object, string>, idleClosed?: IdleClose[]): Pool {
  const pool = new Pool({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    application_name: name,
    max,
    // Longer than failover.holdMs, so a held connection is not given up on by the client first.
    connectionTimeoutMillis: 30_000,
    query_timeout: 30_000,
  });
  // A checked-out client has no listener from the pool: a FATAL that arrives right after a
  // ReadyForQuery (a drain closing the session) would otherwise be an uncaught 'error'.
  pool.on('connect', (client) => {
    client.on('error', (err) => sessionErrors.set(client, codeOf(err) ?? 'none'));
  });
  pool.on('error', (err) => idleClosed?.push({ at: Date.now(), code: codeOf(err) ?? 'none' }));
  return pool;
}

/** A client from the pool; undefined once `onFailure` has the reason and 50 ms have passed, as an application would pause before trying again. */
export async function checkOut(pool: Pool, onFailure: (err: unknown) => void): Promise<PoolClient | undefined> {
  try {
    return await pool.connect();
  } catch (err) {
    onFailure(err);
    await pause(50);
    return undefined;
  }
}

/** Back to the pool, or, after an error, out of it: the session may be broken. */
export function release(conn: PoolClient, err?: unknown): void {
  if (err === undefined) conn.release();
  else conn.release(err instanceof Error ? err : new Error(messageOf(err)));
}

/**
 * The failure of one transaction, and whether its outcome is unknown: an ErrorResponse to COMMIT
 * means it rolled back, unless it is FATAL (the session may have died after the commit record)
 * or there was no answer at all.
 */
function classifyFailure(err: unknown, sessionError: string | undefined, client: number, seq: number, stage: Stage): { failure: Failure; unknown: boolean } {
  const answered = codeOf(err);
  const failure: Failure = {
    at: Date.now(),
    client,
    seq,
    stage,
    code: answered ?? sessionError ?? 'none',
    viaSessionError: answered === undefined && sessionError !== undefined,
    message: messageOf(err),
  };
  const severity = severityOf(err);
  return { failure, unknown: stage === 'commit' && (answered === undefined || severity === 'FATAL' || severity === 'PANIC') };
}

export interface Statement {
  stage: Stage;
  sql: string;
  params?: unknown[];
}

/**
 * Runs `statements` on a checked-out client, each its own round trip (so a switchover's drain has
 * transaction boundaries to close sessions at), and logs the outcome under (client, seq): an
 * acknowledgement with the port a statement returned as `port`, or a failure, known or unknown.
 */
export async function runTransaction(conn: PoolClient, sessionErrors: WeakMap<object, string>, log: LoadLog, client: number, seq: number, statements: readonly Statement[]): Promise<void> {
  let stage: Stage = 'begin';
  let port = 0;
  try {
    for (const statement of statements) {
      stage = statement.stage;
      const { rows } = await conn.query<{ port?: number }>(statement.sql, statement.params);
      port = rows[0]?.port ?? port;
    }
    release(conn);
    log.acks.push({ at: Date.now(), client, seq, port });
  } catch (err) {
    const { failure, unknown } = classifyFailure(err, sessionErrors.get(conn), client, seq, stage);
    release(conn, err);
    (unknown ? log.unknown : log.failed).push(failure);
  }
}

export interface OneOffConnection {
  at: number;
  ok: boolean;
  /** Connect plus `select 1`: includes any time pgfloat held the connection. */
  ms: number;
  code?: string;
  message?: string;
}

/** A new unpooled connection and `select 1`, as an application's first connection would be: only new ones show whether pgfloat holds or refuses them. */
export async function connectOnce(port: number, applicationName: string): Promise<OneOffConnection> {
  const at = Date.now();
  const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', application_name: applicationName, connectionTimeoutMillis: 30_000 });
  client.on('error', () => undefined);
  let outcome: OneOffConnection;
  try {
    await client.connect();
    await client.query('select 1');
    outcome = { at, ok: true, ms: Date.now() - at };
  } catch (err) {
    outcome = { at, ok: false, ms: Date.now() - at, code: codeOf(err) ?? 'none', message: messageOf(err) };
  }
  await client.end().catch(() => undefined);
  return outcome;
}
