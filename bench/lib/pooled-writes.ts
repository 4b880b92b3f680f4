// What the pooled-writer benches share: the application-like pool, and how a failed transaction is told apart from one whose outcome is unknown.

import { Pool, type DatabaseError } from 'pg';
import type { Failure, IdleClose, Stage } from '../switchover/load';

export const codeOf = (err: unknown): string | undefined => (err as Partial<DatabaseError>).code;
export const severityOf = (err: unknown): string | undefined => (err as Partial<DatabaseError>).severity;
export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** A pool as an application has: reconnects on demand, waits (not fails) while pgfloat holds new connections. */
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

/**
 * The failure of one transaction, and whether its outcome is unknown: an ErrorResponse to COMMIT
 * means it rolled back, unless it is FATAL (the session may have died after the commit record)
 * or there was no answer at all.
 */
export function classifyFailure(err: unknown, sessionError: string | undefined, client: number, seq: number, stage: Stage): { failure: Failure; unknown: boolean } {
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
