// Writers for the reliability suite: each insert is logged as acknowledged (with the server and WAL position that took it), failed, or unknown.

import { Client } from 'pg';
import { queryOnce } from './clients';

export interface AckedWrite {
  client: number;
  seq: number;
  /** inet_server_port() of the server that committed it: which node took the write. */
  port: number;
  /** pg_current_wal_insert_lsn() while inserting: just before the row's WAL. */
  lsn: string;
  /** The server's clock_timestamp() at the insert, ms. */
  at: number;
  /** When the client read the answer, ms. */
  ackAt: number;
}

export interface UnsettledWrite {
  client: number;
  seq: number;
  /** When the attempt ended, ms. */
  at: number;
  code?: string;
  message: string;
}

export interface HistoryLog {
  acked: AckedWrite[];
  /** An ERROR answered the insert: it did not commit. */
  failed: UnsettledWrite[];
  /** The connection was lost, timed out or FATAL-terminated before the answer: committed or not, nobody knows. */
  unknown: UnsettledWrite[];
  /** A new connection could not be made (a pool's "cannot connect"). */
  connectFailures: UnsettledWrite[];
}

export interface HistoryWriters {
  log: HistoryLog;
  /** Resolves once `n` more writes have been acknowledged (rejects after `timeoutMs`). */
  acked(n: number, timeoutMs?: number): Promise<void>;
  /** Stops the loops; resolves with the log once every loop has ended. */
  stop(): Promise<HistoryLog>;
}

export const HISTORY_TABLE = 'history';

export async function createHistoryTable(url: string): Promise<void> {
  await queryOnce(url, `CREATE TABLE IF NOT EXISTS ${HISTORY_TABLE} (client int, seq int, at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (client, seq))`);
}

export interface WriterOptions {
  clients: number;
  /** Pause between one writer's inserts. */
  pauseMs?: number;
  /** A statement without an answer for this long counts as unknown (a hung server). */
  queryTimeoutMs?: number;
  /** How long a connection attempt may wait (pgfloat holds new writers during a failover). */
  connectTimeoutMs?: number;
}

/**
 * `clients` writers, each with one connection through `url` that it replaces when it breaks, as
 * a pool would; every (client, seq) is attempted once. Several URLs behave like a multi-host
 * connection string (`host=a,b,c`): each connection attempt tries them in order, and only a
 * round in which every one refused counts as a failed connect.
 */
export function startHistoryWriters(url: string | readonly string[], opts: WriterOptions): HistoryWriters {
  const urls = typeof url === 'string' ? [url] : url;
  const log: HistoryLog = { acked: [], failed: [], unknown: [], connectFailures: [] };
  const waiters: Array<{ target: number; resolve: () => void }> = [];
  let running = true;
  const onAck = (write: AckedWrite): void => {
    log.acked.push(write);
    for (const w of waiters.filter((w) => log.acked.length >= w.target)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const loop = async (client: number): Promise<void> => {
    let conn: Client | undefined;
    for (let seq = 1; running; seq++) {
      if (conn === undefined) {
        let last: (Error & { code?: string }) | undefined;
        // Writers start at different hosts, as load_balance_hosts would spread them.
        for (let k = 0; k < urls.length; k++) {
          const target = urls[(client + k) % urls.length]!;
          const fresh = new Client({ connectionString: target, connectionTimeoutMillis: opts.connectTimeoutMs ?? 30_000, query_timeout: opts.queryTimeoutMs ?? 10_000 });
          fresh.on('error', () => undefined);
          try {
            await fresh.connect();
            conn = fresh;
            break;
          } catch (err) {
            last = err as Error & { code?: string };
            fresh.end().catch(() => undefined);
          }
        }
        if (conn === undefined) {
          if (running) log.connectFailures.push({ client, seq, at: Date.now(), code: last?.code, message: last?.message ?? 'no URL' });
          seq--; // the write was never attempted
          await sleep(50);
          continue;
        }
      }
      try {
        const { rows } = await conn.query<{ port: number; lsn: string; at: Date }>(
          `INSERT INTO ${HISTORY_TABLE} (client, seq) VALUES ($1, $2) RETURNING inet_server_port() AS port, pg_current_wal_insert_lsn()::text AS lsn, at`,
          [client, seq],
        );
        const row = rows[0]!;
        onAck({ client, seq, port: row.port, lsn: row.lsn, at: row.at.getTime(), ackAt: Date.now() });
      } catch (err) {
        const e = err as Error & { code?: string; severity?: string };
        // An ERROR means the statement did not commit; a FATAL (the session terminated) or a lost
        // connection may have come after the commit.
        const settled = { client, seq, at: Date.now(), code: e.code, message: e.message };
        // Known not to have run: pgfloat's own FATAL for a session it closed at a transaction
        // boundary answers the statement in the server's place, and pg refuses to send anything
        // on a connection it already knows is broken.
        const neverSent = (e.code === '57P01' && /switching over to another server/.test(e.message)) || /not queryable/.test(e.message);
        if (neverSent || (e.code !== undefined && e.severity !== 'FATAL')) {
          log.failed.push(settled);
          if (e.severity === 'FATAL' || neverSent) {
            conn.end().catch(() => undefined);
            conn = undefined;
          }
        } else {
          log.unknown.push(settled);
          conn.end().catch(() => undefined);
          conn = undefined;
        }
      }
      if (opts.pauseMs) await sleep(opts.pauseMs);
    }
    await conn?.end().catch(() => undefined);
  };
  const loops = Array.from({ length: opts.clients }, (_, i) => loop(i + 1));
  return {
    log,
    acked: (n, timeoutMs = 60_000) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${n} more acknowledged writes not seen within ${timeoutMs} ms (${log.acked.length} so far)`)), timeoutMs);
        waiters.push({ target: log.acked.length + n, resolve: () => (clearTimeout(timer), resolve()) });
      }),
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return log;
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
