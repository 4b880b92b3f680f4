// The failover core's hands on a server: promote it, fence it. Each call opens its own short-lived connection.

import { spawn } from 'node:child_process';
import { Client } from 'pg';
import { lsnToBigInt } from '../monitor/observation';
import type { BackendNode } from '../proxy/session';

export interface AdminCredentials {
  user: string;
  password: string;
  database: string;
}

export type FencingAction = 'none' | 'sql' | 'command';

export interface FencingOptions {
  action: FencingAction;
  command: string | null;
  timeoutMs: number;
}

export class NodeAdmin {
  constructor(
    private readonly credentials: AdminCredentials,
    private readonly connectTimeoutMs: number,
  ) {}

  /**
   * Resolves once the server has left recovery. pg_promote(wait => true) checks only every 100 ms,
   * which would add up to that much to every failover's write gap, so pgfloat asks without waiting
   * and watches pg_is_in_recovery() itself. A read-only setting left by an earlier `sql` fencing
   * is cleared only afterwards: reloading the configuration while a standby is retrying for WAL
   * makes it miss the promote request until wal_retrieve_retry_interval (5 s by default) has passed.
   * Resolves with the node's synchronous_standby_names, read on the way.
   */
  async promote(node: BackendNode, timeoutMs: number): Promise<string> {
    return this.session(node, timeoutMs, async (client) => {
      const readOnly = await client.query<{ on: boolean; names: string }>(
        "SELECT current_setting('default_transaction_read_only') = 'on' AS on, current_setting('synchronous_standby_names') AS names",
      );
      const { rows } = await client.query<{ signalled: boolean }>('SELECT pg_promote(false) AS signalled');
      if (rows[0]?.signalled !== true) throw new Error('pg_promote() could not signal the postmaster');
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const recovery = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        if (recovery.rows[0]?.r === false) break;
        if (Date.now() > deadline) throw new Error(`the server was still in recovery ${timeoutMs} ms after pg_promote()`);
        await sleep(5);
      }
      if (readOnly.rows[0]?.on) {
        await client.query('ALTER SYSTEM RESET default_transaction_read_only');
        await client.query('SELECT pg_reload_conf()');
      }
      return readOnly.rows[0]?.names.trim() ?? '';
    });
  }

  /** Applies fencing.action; resolves to what was done, rejects with why it could not be. */
  async fence(node: BackendNode, fencing: FencingOptions): Promise<string> {
    switch (fencing.action) {
      case 'none':
        return 'fencing.action is none: the node is fenced at the proxy only';
      case 'sql':
        return this.session(node, fencing.timeoutMs, async (client) => {
          // Read-only for new transactions, and every client session ended: whatever still
          // reaches this server directly (not through pgfloat) cannot write.
          await client.query('ALTER SYSTEM SET default_transaction_read_only = on');
          await client.query('SELECT pg_reload_conf()');
          const { rows } = await client.query<{ n: string }>(
            `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                AND application_name NOT IN ('pgfloat-monitor', 'pgfloat-admin')`,
          );
          return `set default_transaction_read_only and terminated ${rows[0]?.n ?? 0} client sessions`;
        });
      case 'command':
        return runFencingCommand(node, fencing);
    }
  }

  /**
   * The last WAL position the node wrote, once it is flushed: walsenders send only flushed WAL,
   * so waiting for a standby to replay an unflushed position could wait forever.
   */
  async finalLsn(node: BackendNode, timeoutMs: number): Promise<string> {
    return this.session(node, timeoutMs, async (client) => {
      // A commit flushes the WAL up to its commit record, and so everything inserted before it (the
      // aborts of terminated sessions, asynchronous commits), but only for a transaction that wrote
      // WAL: one that merely took an xid commits asynchronously, and the WAL writer gets to it only
      // after wal_writer_delay (200 ms of write gap). A transactional logical message is WAL that
      // needs no table and works at any wal_level; it also marks the switchover point in the WAL.
      // READ WRITE: the sql fencing has just made read-only the default.
      await client.query('SET synchronous_commit = local');
      await client.query("BEGIN READ WRITE; SELECT pg_logical_emit_message(true, 'pgfloat', 'switchover'); COMMIT");
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { rows } = await client.query<{ insert: string; flush: string }>(
          'SELECT pg_current_wal_insert_lsn()::text AS insert, pg_current_wal_flush_lsn()::text AS flush',
        );
        const { insert, flush } = rows[0]!;
        if (flushedUpTo(insert, flush)) return flush;
        if (Date.now() > deadline) throw new Error(`WAL up to ${insert} not flushed within ${timeoutMs} ms (flushed: ${flush})`);
        await sleep(5);
      }
    });
  }

  /** The WAL a standby has received (what it will have once replayed); for an old primary that was stopped cleanly. */
  async receivedLsn(node: BackendNode, timeoutMs: number): Promise<string> {
    return this.session(node, timeoutMs, async (client) => {
      const { rows } = await client.query<{ lsn: string | null }>('SELECT pg_last_wal_receive_lsn()::text AS lsn');
      const lsn = rows[0]?.lsn;
      if (lsn == null) throw new Error(`${node.name} reports no received WAL position`);
      return lsn;
    });
  }

  /** Polls until the standby has replayed up to `lsn`; one connection, a few milliseconds between checks. */
  async awaitReplay(node: BackendNode, lsn: string, timeoutMs: number): Promise<void> {
    await this.session(node, timeoutMs, async (client) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { rows } = await client.query<{ replayed: string | null; done: boolean | null }>(
          'SELECT pg_last_wal_replay_lsn()::text AS replayed, pg_last_wal_replay_lsn() >= $1::pg_lsn AS done',
          [lsn],
        );
        if (rows[0]?.done === true) return;
        if (Date.now() > deadline) throw new Error(`replayed up to ${rows[0]?.replayed ?? 'nothing'} of ${lsn} within ${timeoutMs} ms`);
        await sleep(3);
      }
    });
  }

  /** Undoes the `sql` fencing: new transactions may write again. */
  async resumeWrites(node: BackendNode, timeoutMs: number): Promise<void> {
    await this.session(node, timeoutMs, async (client) => {
      await client.query('ALTER SYSTEM RESET default_transaction_read_only');
      await client.query('SELECT pg_reload_conf()');
    });
  }

  /**
   * Logical replication slots on the primary that a switchover to `standby` would lose. Before
   * PostgreSQL 17 every one of them; from 17 on, those not marked for failover or not yet
   * synchronized to the standby.
   */
  async slotsLostBySwitchover(primary: BackendNode, standby: BackendNode, timeoutMs: number): Promise<string[]> {
    return this.session(primary, timeoutMs, async (client) => {
      const version = Number((await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0]?.v ?? 0);
      if (version < 170000) {
        const { rows } = await client.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY 1");
        return rows.map((r) => r.slot_name);
      }
      const { rows } = await client.query<{ slot_name: string }>(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT failover ORDER BY 1",
      );
      const notFailover = rows.map((r) => r.slot_name);
      const failover = await client.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical' AND failover ORDER BY 1");
      if (failover.rows.length === 0) return notFailover;
      const synced = await this.session(standby, timeoutMs, async (sc) => {
        const r = await sc.query<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical' AND synced AND NOT temporary");
        return new Set(r.rows.map((x) => x.slot_name));
      });
      return [...notFailover, ...failover.rows.map((r) => r.slot_name).filter((n) => !synced.has(n)).map((n) => `${n} (not yet synchronized)`)];
    });
  }

  /** Runs `work` on a short-lived admin connection to `node`, closed afterwards whatever happens. */
  async session<T>(node: BackendNode, timeoutMs: number, work: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({
      host: node.host,
      port: node.port,
      user: this.credentials.user,
      password: this.credentials.password,
      database: this.credentials.database,
      application_name: 'pgfloat-admin',
      connectionTimeoutMillis: this.connectTimeoutMs,
      query_timeout: timeoutMs + 5000,
    });
    client.on('error', () => undefined);
    try {
      await client.connect().catch((err: Error) => {
        throw new NodeUnreachableError(node, err);
      });
      return await work(client);
    } finally {
      client.end().catch(() => undefined);
    }
  }
}

/** The node did not take an admin connection at all (down, refusing, unreachable). */
export class NodeUnreachableError extends Error {
  constructor(node: BackendNode, cause: Error) {
    super(`cannot connect to ${node.name} (${node.host}:${node.port}): ${cause.message}`);
    this.name = 'NodeUnreachableError';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const WAL_PAGE = 8192n;
const LONG_PAGE_HEADER = 40n;

/**
 * True once everything inserted is flushed. When the last record ended exactly at a page end,
 * the insert position already points past the next page's header, which will not be flushed
 * until something else is written: that gap counts as flushed.
 */
function flushedUpTo(insert: string, flush: string): boolean {
  const i = lsnToBigInt(insert);
  const f = lsnToBigInt(flush);
  return f >= i || (i - f <= LONG_PAGE_HEADER && i % WAL_PAGE <= LONG_PAGE_HEADER && f % WAL_PAGE === 0n);
}

function runFencingCommand(node: BackendNode, fencing: FencingOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', fencing.command!], {
      env: { ...process.env, PGFLOAT_NODE_NAME: node.name, PGFLOAT_NODE_HOST: node.host, PGFLOAT_NODE_PORT: String(node.port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), fencing.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`fencing command could not start: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const tail = output.trim().split('\n').slice(-5).join(' | ');
      if (code === 0) resolve(`fencing command succeeded${tail ? `: ${tail}` : ''}`);
      else reject(new Error(`fencing command failed (${signal ?? `exit ${code}`})${tail ? `: ${tail}` : ''}`));
    });
  });
}
