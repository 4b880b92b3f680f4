// The switchover benchmark's load: pgbench-like write transactions (and optional reads) through pooled, reconnecting clients, every outcome logged.

import { Client, type Pool } from 'pg';
import { checkOut, codeOf, connectFailure, connectOnce, emptyLoadLog, makePool, messageOf, release, runTransaction, type ConnectFailure, type LoadLog, type OneOffConnection } from '../lib/pooled-load';

/** Created directly on the primary before pgfloat starts: pgbench's accounts (scale 1) and a history keyed by (client, seq). */
export const SCHEMA = [
  'create table bench_accounts (aid int primary key, abalance bigint not null default 0)',
  'insert into bench_accounts (aid) select generate_series(1, 100000)',
  'create table bench_history (client int not null, seq int not null, aid int not null, delta int not null, at timestamptz not null default clock_timestamp(), primary key (client, seq))',
];
export const ACCOUNTS = 100_000;

const UPDATE = 'update bench_accounts set abalance = abalance + $1 where aid = $2';
const INSERT = 'insert into bench_history (client, seq, aid, delta) values ($1, $2, $3, $4) returning inet_server_port() as port';
const READ = 'select abalance, inet_server_port() as port from bench_accounts where aid = $1';

export interface ReadLog {
  /** Times of successful reads. */
  okAt: number[];
  failed: Array<{ at: number; code: string; message: string }>;
  connectFailures: ConnectFailure[];
}

/** One new connection through the read-write port (no pool), as an application's first connection would be. */
export type Probe = OneOffConnection;

export interface LoadOptions {
  port: number;
  writers: number;
  readOnlyPort?: number;
  readers: number;
  /** A probe every probeMs; 0: none. */
  probeMs: number;
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Load {
  readonly log: LoadLog = emptyLoadLog();
  readonly reads: ReadLog = { okAt: [], failed: [], connectFailures: [] };
  readonly probes: Probe[] = [];
  private running = true;
  private readonly sessionErrors = new WeakMap<object, string>();
  private readonly writePool: Pool;
  private readonly readPool: Pool | undefined;
  private readonly loops: Promise<void>[] = [];

  constructor(opts: LoadOptions) {
    this.writePool = makePool(opts.port, opts.writers, 'switchover-bench-writer', this.sessionErrors, this.log.idleClosed);
    for (let c = 1; c <= opts.writers; c++) this.loops.push(this.writeLoop(c));
    if (opts.readers > 0 && opts.readOnlyPort !== undefined) {
      this.readPool = makePool(opts.readOnlyPort, opts.readers, 'switchover-bench-reader', this.sessionErrors);
      for (let r = 1; r <= opts.readers; r++) this.loops.push(this.readLoop(this.readPool));
    }
    if (opts.probeMs > 0) this.loops.push(this.probeLoop(opts.port, opts.probeMs));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all([this.writePool.end(), this.readPool?.end()].map((p) => p?.catch(() => undefined)));
  }

  /** Resolves once `n` more transactions have been acknowledged (or rejects after timeoutMs). */
  async acked(n: number, timeoutMs: number): Promise<void> {
    const target = this.log.acks.length + n;
    const deadline = Date.now() + timeoutMs;
    while (this.log.acks.length < target) {
      if (Date.now() > deadline) throw new Error(`fewer than ${n} transactions acknowledged in ${timeoutMs} ms`);
      await pause(20);
    }
  }

  /** Once the load is stopping, a failed connect no longer counts: the windows it would fall in have ended. */
  private connectFailed(failures: ConnectFailure[], err: unknown): void {
    if (this.running) failures.push(connectFailure(err));
  }

  /** One pgbench-like transaction after another, each statement its own round trip. */
  private async writeLoop(client: number): Promise<void> {
    for (let next = 1; this.running; ) {
      const conn = await checkOut(this.writePool, (err) => this.connectFailed(this.log.connectFailures, err));
      if (conn === undefined) continue;
      const seq = next++;
      const aid = 1 + Math.floor(Math.random() * ACCOUNTS);
      const delta = Math.floor(Math.random() * 10_001) - 5000;
      await runTransaction(conn, this.sessionErrors, this.log, client, seq, [
        { stage: 'begin', sql: 'begin' },
        { stage: 'update', sql: UPDATE, params: [delta, aid] },
        { stage: 'insert', sql: INSERT, params: [client, seq, aid, delta] },
        { stage: 'commit', sql: 'commit' },
      ]);
    }
  }

  private async readLoop(pool: Pool): Promise<void> {
    while (this.running) {
      const conn = await checkOut(pool, (err) => this.connectFailed(this.reads.connectFailures, err));
      if (conn === undefined) continue;
      try {
        await conn.query(READ, [1 + Math.floor(Math.random() * ACCOUNTS)]);
        release(conn);
        this.reads.okAt.push(Date.now());
      } catch (err) {
        const code = codeOf(err) ?? this.sessionErrors.get(conn) ?? 'none';
        release(conn, err);
        this.reads.failed.push({ at: Date.now(), code, message: messageOf(err) });
      }
    }
  }

  /** The pooled writers keep their connections: only new ones show whether pgfloat holds or refuses them meanwhile. */
  private async probeLoop(port: number, everyMs: number): Promise<void> {
    while (this.running) {
      const probe = await connectOnce(port, 'switchover-bench-probe');
      this.probes.push(probe);
      await pause(Math.max(0, everyMs - (Date.now() - probe.at)));
    }
  }
}

/** The (client, seq) keys present in bench_history on a server, read directly (not through pgfloat), and whether balances match history. */
export async function readHistory(connectionString: string): Promise<{ keys: Set<string>; balanced: boolean; rows: number }> {
  const client = new Client({ connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ client: number; seq: number }>('select client, seq from bench_history');
    // Each transaction adds delta to one account and records it in history: sums differ only if a half transaction survived.
    const sums = await client.query<{ accounts: string; history: string }>(
      'select (select coalesce(sum(abalance), 0) from bench_accounts)::text as accounts, (select coalesce(sum(delta), 0) from bench_history)::text as history',
    );
    return { keys: new Set(rows.map((r) => `${r.client}/${r.seq}`)), balanced: sums.rows[0]!.accounts === sums.rows[0]!.history, rows: rows.length };
  } finally {
    await client.end();
  }
}
