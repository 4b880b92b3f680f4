// The soak's load: paced pooled writers (every outcome logged), paced pooled readers on the read-only port, and short-lived connections that churn sessions.

import type { Pool } from 'pg';
import { checkOut, codeOf, connectFailure, connectOnce, emptyLoadLog, makePool, release, runTransaction, type LoadLog, type OneOffConnection } from '../lib/pooled-load';

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

export interface ChurnOutcome extends OneOffConnection {
  listener: 'readWrite' | 'readOnly';
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
  readonly log: LoadLog = emptyLoadLog();
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

  /** BEGIN; INSERT; COMMIT, each its own round trip. */
  private async writeLoop(client: number, pacer: Pacer): Promise<void> {
    for (let next = 1; this.running; ) {
      await pacer.next();
      if (!this.running) break;
      const conn = await checkOut(this.writePool, (err) => {
        if (this.running) this.log.connectFailures.push(connectFailure(err));
      });
      if (conn === undefined) continue;
      const seq = next++;
      await runTransaction(conn, this.sessionErrors, this.log, client, seq, [
        { stage: 'begin', sql: 'begin' },
        { stage: 'insert', sql: INSERT, params: [client, seq, this.payload] },
        { stage: 'commit', sql: 'commit' },
      ]);
    }
  }

  private async readLoop(pacer: Pacer): Promise<void> {
    while (this.running) {
      await pacer.next();
      if (!this.running) break;
      const conn = await checkOut(this.readPool, (err) => {
        if (this.running) this.reads.push({ at: Date.now(), ok: false, code: `connect ${codeOf(err) ?? 'none'}` });
      });
      if (conn === undefined) continue;
      try {
        await conn.query(READ, [1 + Math.floor(Math.random() * this.opts.writers)]);
        release(conn);
        this.reads.push({ at: Date.now(), ok: true });
      } catch (err) {
        const code = codeOf(err) ?? this.sessionErrors.get(conn) ?? 'none';
        release(conn, err);
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
      const port = listener === 'readWrite' ? this.opts.readWritePort : this.opts.readOnlyPort;
      this.churn.push({ ...(await connectOnce(port, 'soak-churn')), listener });
    }
  }
}
