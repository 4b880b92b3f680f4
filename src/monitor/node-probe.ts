// One persistent monitor connection to one node and the heartbeat query it runs.

import type { Client } from 'pg';
import type { NodeAddress } from '../cluster/node';
import { MONITOR_APPLICATION_NAME } from '../postgres/admin-session';
import { connectPg, isEncrypted, policyOf, tlsFailure } from '../postgres/connect';
import type { NodeObservation, ObservedTls } from './observation';

/** A node as the monitor reaches it: its address and serverTls. */
export type ProbeTarget = NodeAddress;

export interface ProbeCredentials {
  user: string;
  password: string;
  database: string;
}

// One round trip answers everything routing and failover need. CASE keeps primary-only
// functions from running on a standby, where they raise errors.
const HEARTBEAT_SQL = `
SELECT pg_is_in_recovery() AS in_recovery,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS wal_timeline,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       r.status AS receiver_status,
       r.received_tli AS receiver_timeline,
       (extract(epoch FROM now() - r.last_msg_receipt_time) * 1000)::float8 AS receiver_age_ms,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_delay
  FROM (SELECT 1) AS one
  LEFT JOIN pg_stat_wal_receiver AS r ON true`;

interface HeartbeatRow {
  in_recovery: boolean;
  system_identifier: string;
  current_lsn: string | null;
  wal_timeline: number | null;
  checkpoint_timeline: number | null;
  receive_lsn: string | null;
  replay_lsn: string | null;
  receiver_status: string | null;
  receiver_timeline: number | null;
  receiver_age_ms: number | null;
  replay_delay: number | null;
}

/** pg keeps its socket here; a hung server never answers `end()`, so a timed-out probe destroys it. */
interface ClientWithStream {
  connection?: { stream?: { destroy(): void } };
}

export class NodeProbe {
  private client: Client | undefined;
  /** What the open connection negotiated; set when it connects. */
  private negotiated: ObservedTls | undefined;
  /** Grows at every discard: a connect that a timed-out heartbeat left running must not become the client after it. */
  private generation = 0;

  constructor(
    readonly target: ProbeTarget,
    private readonly credentials: ProbeCredentials,
    private readonly timeoutMs: number,
  ) {}

  /** Runs one heartbeat; never throws: failures come back as an unreachable observation. */
  async heartbeat(): Promise<NodeObservation> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`heartbeat timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      const row = await Promise.race([this.query(), timeout]);
      return this.toObservation(row, performance.now() - started);
    } catch (err) {
      // A connection that failed after TLS was settled (a query error, a restart) still tells what it negotiated.
      const tls = this.negotiated ?? this.failedTls(err);
      this.discard();
      return {
        node: this.target.name,
        at: Date.now(),
        reachable: false,
        error: (err as Error).message,
        latencyMs: performance.now() - started,
        tls,
      };
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.discard();
  }

  private async query(): Promise<HeartbeatRow> {
    if (this.client === undefined) {
      const generation = this.generation;
      const client = await connectPg(
        this.target,
        {
          user: this.credentials.user,
          password: this.credentials.password,
          database: this.credentials.database,
          application_name: MONITOR_APPLICATION_NAME,
          connectionTimeoutMillis: this.timeoutMs,
          keepAlive: true,
        },
        // An error on an idle client (server restarted) must not become an uncaught exception.
        (c) => c.on('error', () => this.discard(c)),
      );
      if (generation !== this.generation) {
        client.end().catch(() => undefined);
        throw new Error('heartbeat connection abandoned');
      }
      this.client = client;
      this.negotiated = { state: isEncrypted(client) ? 'encrypted' : 'plaintext' };
    }
    const result = await this.client.query<HeartbeatRow>(HEARTBEAT_SQL);
    const row = result.rows[0];
    if (row === undefined) throw new Error('heartbeat query returned no row');
    return row;
  }

  private failedTls(err: unknown): ObservedTls {
    const failure = tlsFailure(err, policyOf(this.target));
    return failure === undefined ? { state: 'unknown' } : { state: 'failed', error: failure };
  }

  private discard(client: Client | undefined = this.client): void {
    if (client === this.client) this.generation++;
    if (client === undefined) return;
    if (client === this.client) {
      this.client = undefined;
      this.negotiated = undefined;
    }
    (client as unknown as ClientWithStream).connection?.stream?.destroy();
    client.end().catch(() => undefined);
  }

  private toObservation(row: HeartbeatRow, latencyMs: number): NodeObservation {
    const timeline = row.in_recovery
      ? Math.max(row.receiver_timeline ?? 0, row.checkpoint_timeline ?? 0) || undefined
      : (row.wal_timeline ?? row.checkpoint_timeline ?? undefined);
    return {
      node: this.target.name,
      at: Date.now(),
      reachable: true,
      latencyMs,
      inRecovery: row.in_recovery,
      systemIdentifier: row.system_identifier,
      timeline,
      currentLsn: row.current_lsn ?? undefined,
      receiveLsn: row.receive_lsn ?? undefined,
      replayLsn: row.replay_lsn ?? undefined,
      walReceiverStatus: row.receiver_status ?? undefined,
      walReceiverAgeMs: row.receiver_age_ms ?? undefined,
      replayDelaySeconds: row.replay_delay ?? undefined,
      tls: this.negotiated,
    };
  }
}
