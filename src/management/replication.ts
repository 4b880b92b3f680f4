// What a rejoin asks of the servers over SQL: the primary's CHECKPOINT and timeline, then the rejoined node streaming on it.

import type { Client } from 'pg';
import { withAdminSession } from '../postgres/admin-session';
import type { ManagementContext, Progress } from './types';
import type { NodeAddress } from '../cluster/node';
import type { Deadline } from '../system/deadline';

const CONNECT_TIMEOUT_MS = 5_000;
const POLL_MS = 250;

/** A short-lived admin connection whose connect and every query fit in `timeoutMs`. */
function withAdmin<T>(node: NodeAddress, ctx: ManagementContext, timeoutMs: number, work: (client: Client) => Promise<T>): Promise<T> {
  return withAdminSession(node, ctx.credentials, { connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, timeoutMs), queryTimeoutMs: timeoutMs }, work);
}

/** Rejects unless `primary` answers and is out of recovery: checked before anything is done to the rejoining node. */
export async function verifyPrimary(primary: NodeAddress, ctx: ManagementContext, deadline: Deadline): Promise<void> {
  await onPrimary(primary, ctx, deadline, `checking ${primary.name}`, async () => undefined);
}

/**
 * Runs CHECKPOINT on `primary` and returns its timeline. A freshly promoted primary's control
 * file shows the old timeline until its first checkpoint, and pg_rewind, which reads it, would
 * then answer "no rewind required".
 */
export async function checkpointPrimary(primary: NodeAddress, ctx: ManagementContext, deadline: Deadline, progress: Progress, why: string): Promise<number> {
  return onPrimary(primary, ctx, deadline, `the CHECKPOINT on ${primary.name}`, async (client) => {
    progress(`CHECKPOINT on ${primary.name} ${why}`);
    await client.query('CHECKPOINT');
    const tli = await client.query<{ tli: number }>('SELECT timeline_id AS tli FROM pg_control_checkpoint()');
    const timeline = tli.rows[0]?.tli;
    if (typeof timeline !== 'number') throw new Error('pg_control_checkpoint() returned no timeline');
    return timeline;
  });
}

async function onPrimary<T>(primary: NodeAddress, ctx: ManagementContext, deadline: Deadline, step: string, work: (client: Client) => Promise<T>): Promise<T> {
  const timeoutMs = deadline.remaining(step);
  try {
    return await withAdmin(primary, ctx, timeoutMs, async (client) => {
      const { rows } = await client.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery');
      if (rows[0]?.recovery !== false) throw new Error('it is in recovery: a node can only rejoin the current primary');
      return work(client);
    });
  } catch (err) {
    throw new Error(`primary ${primary.name} (${primary.host}:${primary.port}): ${(err as Error).message}`);
  }
}

interface ReceiverRow {
  recovery: boolean;
  status: string | null;
  received_tli: number | null;
  sender_host: string | null;
  sender_port: number | null;
}

export interface StreamingWait {
  /** For a local node: why it cannot come up any more (its postmaster is gone), else undefined. */
  whyDead?: () => Promise<string | undefined>;
  /** Appended to a timeout's error: the end of the node's server log, say. */
  diagnostics?: () => string;
}

/** Resolves once `node` runs in recovery with its WAL receiver streaming on `timeline`. */
export async function waitForStreaming(
  node: NodeAddress,
  primary: NodeAddress,
  timeline: number,
  ctx: ManagementContext,
  deadline: Deadline,
  progress: Progress,
  wait: StreamingWait = {},
): Promise<void> {
  progress(`waiting for ${node.name} to stream from ${primary.name} on timeline ${timeline}`);
  let last = 'no answer yet';
  for (;;) {
    const timeoutMs = Math.min(CONNECT_TIMEOUT_MS, deadline.remaining(`${node.name} streamed from ${primary.name} (last seen: ${last})`));
    try {
      const row = await withAdmin(node, ctx, timeoutMs, async (client) => {
        const { rows } = await client.query<ReceiverRow>(
          `SELECT pg_is_in_recovery() AS recovery, r.status, r.received_tli, r.sender_host, r.sender_port
             FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true`,
        );
        return rows[0];
      });
      if (row === undefined) {
        last = 'no row from pg_stat_wal_receiver';
      } else if (!row.recovery) {
        // Out of recovery it will not become a standby by waiting: standby.signal was not honoured.
        throw new FatalWait(`${node.name} runs as a primary, not in recovery`);
      } else if (row.status === 'streaming' && row.received_tli === timeline) {
        progress(`${node.name} streams from ${primary.name} on timeline ${timeline} (WAL receiver connected to ${row.sender_host}:${row.sender_port})`);
        return;
      } else {
        last = `in recovery, WAL receiver ${row.status ?? 'not running'}${row.received_tli !== null ? ` on timeline ${row.received_tli}` : ''}`;
      }
    } catch (err) {
      if (err instanceof FatalWait) throw new Error(`${err.message}${suffix(wait)}`);
      last = (err as Error).message;
      const dead = await wait.whyDead?.().catch(() => undefined);
      if (dead !== undefined) throw new Error(`${node.name} stopped while it should catch up with ${primary.name}: ${dead}${suffix(wait)}`);
    }
    if (deadline.expired()) {
      throw new Error(`${node.name} did not stream from ${primary.name} on timeline ${timeline} in time (last seen: ${last})${suffix(wait)}`);
    }
    await sleep(POLL_MS);
  }
}

/** Resolves once `node` answers a query (a start hook returned before the server was ready, say). */
export async function waitAccepting(node: NodeAddress, ctx: ManagementContext, deadline: Deadline): Promise<void> {
  let last = 'no answer yet';
  for (;;) {
    const timeoutMs = Math.min(CONNECT_TIMEOUT_MS, deadline.remaining(`${node.name} accepted connections (last error: ${last})`));
    try {
      await withAdmin(node, ctx, timeoutMs, (client) => client.query('SELECT 1'));
      return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (deadline.expired()) throw new Error(`${node.name} did not accept connections in time (last error: ${last})`);
    await sleep(POLL_MS);
  }
}

class FatalWait extends Error {}

function suffix(wait: StreamingWait): string {
  const more = wait.diagnostics?.();
  return more ? `\n${more}` : '';
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
