// SQL pgfloat runs on a server as its admin role: promotion, the `sql` fencing, WAL positions, replay waits. Each call opens its own short-lived connection.

import type { Client } from 'pg';
import { lsnToBigInt } from '../cluster/lsn';
import { ADMIN_APPLICATION_NAME, MONITOR_APPLICATION_NAME, withAdminSession, type AdminCredentials } from './admin-session';
import type { NodeAddress } from '../cluster/node';

export class ServerAdmin {
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
  async promote(node: NodeAddress, timeoutMs: number): Promise<string> {
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

  /**
   * The `sql` fencing: read-only for new transactions, and every client session ended, so whatever
   * still reaches this server directly (not through pgfloat) cannot write.
   */
  async makeReadOnly(node: NodeAddress, timeoutMs: number): Promise<string> {
    return this.session(node, timeoutMs, async (client) => {
      await client.query('ALTER SYSTEM SET default_transaction_read_only = on');
      await client.query('SELECT pg_reload_conf()');
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
            AND application_name NOT IN ($1, $2)`,
        [MONITOR_APPLICATION_NAME, ADMIN_APPLICATION_NAME],
      );
      return `set default_transaction_read_only and terminated ${rows[0]?.n ?? 0} client sessions`;
    });
  }

  /**
   * The last WAL position the node wrote, once it is flushed: walsenders send only flushed WAL,
   * so waiting for a standby to replay an unflushed position could wait forever.
   */
  async finalLsn(node: NodeAddress, timeoutMs: number): Promise<string> {
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
  async receivedLsn(node: NodeAddress, timeoutMs: number): Promise<string> {
    return this.session(node, timeoutMs, async (client) => {
      const { rows } = await client.query<{ lsn: string | null }>('SELECT pg_last_wal_receive_lsn()::text AS lsn');
      const lsn = rows[0]?.lsn;
      if (lsn == null) throw new Error(`${node.name} reports no received WAL position`);
      return lsn;
    });
  }

  /** Polls until the standby has replayed up to `lsn`; one connection, a few milliseconds between checks. */
  async awaitReplay(node: NodeAddress, lsn: string, timeoutMs: number): Promise<void> {
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
  async resumeWrites(node: NodeAddress, timeoutMs: number): Promise<void> {
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
  async slotsLostBySwitchover(primary: NodeAddress, standby: NodeAddress, timeoutMs: number): Promise<string[]> {
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

  /** Runs `work` on a short-lived admin connection to `node`; each query gets `timeoutMs` and some slack. */
  session<T>(node: NodeAddress, timeoutMs: number, work: (client: Client) => Promise<T>): Promise<T> {
    return withAdminSession(node, this.credentials, { connectTimeoutMs: this.connectTimeoutMs, queryTimeoutMs: timeoutMs + 5000 }, work);
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
