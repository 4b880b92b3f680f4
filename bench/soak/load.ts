// The soak's load: paced pooled writers (every outcome logged), paced pooled readers on the read-only port, and short-lived connections that churn sessions.

import { Client, type Pool, type PoolClient } from 'pg';
import { classifyFailure, codeOf, makePool, messageOf } from '../lib/pooled-writes';
import type { LoadLog, Stage } from '../switchover/load';

/** Created on the primary before pgfloat starts. */
export const SOAK_SCHEMA = [
  'create table soak_writes (client int not null, seq int not null, payload text not null, at timestamptz not null default clock_timestamp(), primary key (client, seq))',
];

const INSERT = 'insert into soak_writes (client, seq, payload) values ($1, $2, $3) returning inet_server_port() as port';
const READ = 'select max(seq) as seq, inet_server_port() as port from soak_writes where client = $1';

export interface SoakLoadOptions {
  readWritePort: number;
  readOnlyPort: number;
  writers: number;
  /** Write transactions per second, all writers together. */
  writeRate: number;
  readers: number;
  readRate: number;
  /** New short-lived connections per second (connect, select 1, close), alternating between the two ports. */
  churnRate: number;
}

export interface ReadOutcome {
  at: number;
  ok: boolean;
  code?: string;
}

export interface ChurnOutcome {
  at: number;
  listener: 'readWrite' | 'readOnly';
  ok: boolean;
  ms: number;
  code?: string;
  message?: string;
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Keeps a loop on a fixed period without bursting: after a stall longer than a second (a
 * switchover, a failover) the schedule restarts from now instead of catching up.
 */
class Pacer {
  private due = Date.now();
  constructor(private readonly periodMs: number) {
    this.due += Math.random() * periodMs; // loops of the same kind do not start in step
  }
  async next(): Promise<void> {
    const now = Date.now();
    if (now - this.due > 1000) this.due = now;
    const wait = this.due - now;
    this.due += this.periodMs;
    if (wait > 0) await pause(wait);
  }
}


export class SoakLoad {
  readonly log: LoadLog = { acks: [], failed: [], unknown: [], connectFailures: [], idleClosed: [] };
  readonly reads: ReadOutcome[] = [];
  readonly churn: ChurnOutcome[] = [];
  private running = true;
  private readonly sessionErrors = new WeakMap<object, string>();
  private readonly writePool: Pool;
  private readonly readPool: Pool;
  private readonly loops: Promise<void>[] = [];
  private readonly payload = 'x'.repeat(100);

  constructor(private readonly opts: SoakLoadOptions) {
    this.writePool = makePool(opts.readWritePort, opts.writers, 'soak-writer', this.sessionErrors, this.log.idleClosed);
    this.readPool = makePool(opts.readOnlyPort, opts.readers, 'soak-reader', this.sessionErrors);
    for (let c = 1; c <= opts.writers; c++) this.loops.push(this.writeLoop(c, new Pacer((1000 * opts.writers) / opts.writeRate)));
    for (let r = 1; r <= opts.readers && opts.readRate > 0; r++) this.loops.push(this.readLoop(new Pacer((1000 * opts.readers) / opts.readRate)));
    if (opts.churnRate > 0) this.loops.push(this.churnLoop(new Pacer(1000 / opts.churnRate)));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all([this.writePool.end(), this.readPool.end()].map((p) => p.catch(() => undefined)));
  }

  /** BEGIN; INSERT; COMMIT as three round trips, so a switchover's drain has boundaries to close sessions at. */
  private async writeLoop(client: number, pacer: Pacer): Promise<void> {
    for (let seq = 1; this.running; ) {
      await pacer.next();
      if (!this.running) break;
      let conn: PoolClient;
      try {
        conn = await this.writePool.connect();
      } catch (err) {
        if (this.running) this.log.connectFailures.push({ at: Date.now(), code: codeOf(err) ?? 'none', message: messageOf(err) });
        await pause(50);
        continue;
      }
      const mySeq = seq++;
      let stage: Stage = 'begin';
      try {
        await conn.query('begin');
        stage = 'insert';
        const { rows } = await conn.query<{ port: number }>(INSERT, [client, mySeq, this.payload]);
        stage = 'commit';
        await conn.query('commit');
        conn.release();
        this.log.acks.push({ at: Date.now(), client, seq: mySeq, port: rows[0]!.port });
      } catch (err) {
        const { failure, unknown } = classifyFailure(err, this.sessionErrors.get(conn), client, mySeq, stage);
        conn.release(err instanceof Error ? err : new Error(messageOf(err)));
        (unknown ? this.log.unknown : this.log.failed).push(failure);
      }
    }
  }

  private async readLoop(pacer: Pacer): Promise<void> {
    while (this.running) {
      await pacer.next();
      if (!this.running) break;
      let conn: PoolClient;
      try {
        conn = await this.readPool.connect();
      } catch (err) {
        if (this.running) this.reads.push({ at: Date.now(), ok: false, code: `connect ${codeOf(err) ?? 'none'}` });
        await pause(50);
        continue;
      }
      try {
        await conn.query(READ, [1 + Math.floor(Math.random() * this.opts.writers)]);
        conn.release();
        this.reads.push({ at: Date.now(), ok: true });
      } catch (err) {
        const code = codeOf(err) ?? this.sessionErrors.get(conn) ?? 'none';
        conn.release(err instanceof Error ? err : new Error(messageOf(err)));
        this.reads.push({ at: Date.now(), ok: false, code });
      }
    }
  }

  /** Sessions that begin and end all the time: a per-session leak grows with their count, not with time. */
  private async churnLoop(pacer: Pacer): Promise<void> {
    for (let n = 0; this.running; n++) {
      await pacer.next();
      if (!this.running) break;
      const listener = n % 2 === 0 ? 'readWrite' : 'readOnly';
      const at = Date.now();
      const port = listener === 'readWrite' ? this.opts.readWritePort : this.opts.readOnlyPort;
      const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', application_name: 'soak-churn', connectionTimeoutMillis: 30_000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('select 1');
        this.churn.push({ at, listener, ok: true, ms: Date.now() - at });
      } catch (err) {
        this.churn.push({ at, listener, ok: false, ms: Date.now() - at, code: codeOf(err) ?? 'none', message: messageOf(err) });
      }
      await client.end().catch(() => undefined);
    }
  }
}
