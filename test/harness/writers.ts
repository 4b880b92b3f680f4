// Writer clients through pgfloat, pooled and reconnecting as an application's would, logging every write's outcome.

import { Pool, type PoolClient } from 'pg';
import { queryOnce } from './clients';

export interface WriteLog {
  /** Rows whose INSERT was acknowledged: they must be on the final primary. */
  acked: Array<{ client: number; seq: number }>;
  /** Statements that failed with an answer (an ErrorResponse), by SQLSTATE. */
  failed: Map<string, number>;
  /** Statements whose connection was lost before any answer: committed or not, nobody knows. */
  unknown: number;
  /** Attempts to get a connection that failed (refused, reset): a pool's "cannot connect". */
  connectFailures: Array<{ code?: string; message: string }>;
  /** First and last acknowledgement, and the longest time between two consecutive ones (the write gap). */
  firstAckAt?: number;
  lastAckAt?: number;
  longestGapMs: number;
}

export interface Writers {
  log: WriteLog;
  /** Stops the loops and ends the pool. */
  stop(): Promise<WriteLog>;
  /** Resolves once `n` more writes have been acknowledged. */
  acked(n: number): Promise<void>;
}

export async function createWritesTable(url: string): Promise<void> {
  await queryOnce(url, 'CREATE TABLE IF NOT EXISTS writes (client int, seq int, at timestamptz DEFAULT clock_timestamp(), PRIMARY KEY (client, seq))');
}

/** `clients` loops inserting (client, seq) through `url`; each waits `pauseMs` between writes. */
export function startWriters(url: string, clients: number, pauseMs = 0): Writers {
  const pool = new Pool({ connectionString: url, max: clients, connectionTimeoutMillis: 30_000 });
  // An idle pooled connection closed by the server (a FATAL on switchover) surfaces here; the pool drops it.
  pool.on('error', () => undefined);
  const log: WriteLog = { acked: [], failed: new Map(), unknown: 0, connectFailures: [], longestGapMs: 0 };
  let running = true;
  const waiters: Array<{ target: number; resolve: () => void }> = [];
  const onAck = (client: number, seq: number): void => {
    const now = Date.now();
    if (log.lastAckAt !== undefined) log.longestGapMs = Math.max(log.longestGapMs, now - log.lastAckAt);
    log.firstAckAt ??= now;
    log.lastAckAt = now;
    log.acked.push({ client, seq });
    for (const w of waiters.filter((w) => log.acked.length >= w.target)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const loop = async (client: number): Promise<void> => {
    for (let seq = 1; running; seq++) {
      let conn: PoolClient;
      try {
        conn = await pool.connect();
      } catch (err) {
        const e = err as Error & { code?: string };
        if (running) log.connectFailures.push({ code: e.code, message: e.message });
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      try {
        await conn.query('INSERT INTO writes (client, seq) VALUES ($1, $2)', [client, seq]);
        conn.release();
        onAck(client, seq);
      } catch (err) {
        const e = err as Error & { code?: string };
        conn.release(e);
        if (e.code !== undefined) log.failed.set(e.code, (log.failed.get(e.code) ?? 0) + 1);
        else log.unknown++;
      }
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  const loops = Array.from({ length: clients }, (_, i) => loop(i + 1));
  return {
    log,
    acked: (n) => new Promise<void>((resolve) => waiters.push({ target: log.acked.length + n, resolve })),
    stop: async () => {
      running = false;
      await Promise.all(loops);
      await pool.end().catch(() => undefined);
      return log;
    },
  };
}

/** Acknowledged rows missing from the server at `url`. */
export async function missingAcked(url: string, log: WriteLog): Promise<Array<{ client: number; seq: number }>> {
  const rows = await queryOnce<{ client: number; seq: number }>(url, 'SELECT client, seq FROM writes');
  const present = new Set(rows.map((r) => `${r.client}/${r.seq}`));
  return log.acked.filter((w) => !present.has(`${w.client}/${w.seq}`));
}
