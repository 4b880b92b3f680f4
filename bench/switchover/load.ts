// The switchover benchmark's load: pgbench-like write transactions (and optional reads) through pooled, reconnecting clients, every outcome logged.

import { Client, type Pool, type PoolClient } from 'pg';
import { classifyFailure, codeOf, makePool, messageOf } from '../lib/pooled-writes';

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

/** How far a failed transaction got: only a lost COMMIT leaves its outcome unknown. */
export type Stage = 'begin' | 'update' | 'insert' | 'commit';

export interface Ack {
  at: number;
  client: number;
  seq: number;
  /** Port of the PostgreSQL server that ran it (inet_server_port()), i.e. which node. */
  port: number;
}

export interface Failure {
  at: number;
  client: number;
  seq: number;
  stage: Stage;
  /** SQLSTATE of the ErrorResponse; for a connection lost without one, the FATAL the session got before (see `viaSessionError`), else 'none'. */
  code: string;
  /** The code came from the session's own FATAL (pg's 'error' event), not from the statement's answer. */
  viaSessionError: boolean;
  message: string;
}

export interface ConnectFailure {
  at: number;
  code: string;
  message: string;
}

/** An idle pooled connection that the server (or pgfloat) closed: the pool drops it, no transaction is affected. */
export interface IdleClose {
  at: number;
  code: string;
}

export interface LoadLog {
  acks: Ack[];
  /** Known not committed: failed before COMMIT was sent, or COMMIT answered with a non-FATAL error. */
  failed: Failure[];
  /** COMMIT sent, then the connection was lost (or FATAL): committed or not, the client cannot know. */
  unknown: Failure[];
  connectFailures: ConnectFailure[];
  idleClosed: IdleClose[];
}

export interface ReadLog {
  /** Times of successful reads. */
  okAt: number[];
  failed: Array<{ at: number; code: string; message: string }>;
  connectFailures: ConnectFailure[];
}

/** One new connection through the read-write port (no pool), as an application's first connection would be. */
export interface Probe {
  at: number;
  ok: boolean;
  /** Connect plus `select 1`: includes any time pgfloat held the connection. */
  ms: number;
  code?: string;
  message?: string;
}

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
  readonly log: LoadLog = { acks: [], failed: [], unknown: [], connectFailures: [], idleClosed: [] };
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

  /** One pgbench-like transaction after another, each a separate round trip, so a drain has transaction boundaries to wait for. */
  private async writeLoop(client: number): Promise<void> {
    for (let seq = 1; this.running; ) {
      let conn: PoolClient;
      try {
        conn = await this.writePool.connect();
      } catch (err) {
        if (this.running) this.log.connectFailures.push({ at: Date.now(), code: codeOf(err) ?? 'none', message: messageOf(err) });
        await pause(50);
        continue;
      }
      const mySeq = seq++;
      const aid = 1 + Math.floor(Math.random() * ACCOUNTS);
      const delta = Math.floor(Math.random() * 10_001) - 5000;
      let stage: Stage = 'begin';
      try {
        await conn.query('begin');
        stage = 'update';
        await conn.query(UPDATE, [delta, aid]);
        stage = 'insert';
        const { rows } = await conn.query<{ port: number }>(INSERT, [client, mySeq, aid, delta]);
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

  private async readLoop(pool: Pool): Promise<void> {
    while (this.running) {
      let conn: PoolClient;
      try {
        conn = await pool.connect();
      } catch (err) {
        if (this.running) this.reads.connectFailures.push({ at: Date.now(), code: codeOf(err) ?? 'none', message: messageOf(err) });
        await pause(50);
        continue;
      }
      try {
        await conn.query(READ, [1 + Math.floor(Math.random() * ACCOUNTS)]);
        conn.release();
        this.reads.okAt.push(Date.now());
      } catch (err) {
        const code = codeOf(err) ?? this.sessionErrors.get(conn) ?? 'none';
        conn.release(err instanceof Error ? err : new Error(messageOf(err)));
        this.reads.failed.push({ at: Date.now(), code, message: messageOf(err) });
      }
    }
  }

  /** The pooled writers keep their connections: only new ones show whether pgfloat holds or refuses them meanwhile. */
  private async probeLoop(port: number, everyMs: number): Promise<void> {
    while (this.running) {
      const at = Date.now();
      const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', application_name: 'switchover-bench-probe', connectionTimeoutMillis: 30_000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('select 1');
        this.probes.push({ at, ok: true, ms: Date.now() - at });
      } catch (err) {
        this.probes.push({ at, ok: false, ms: Date.now() - at, code: codeOf(err) ?? 'none', message: messageOf(err) });
      }
      await client.end().catch(() => undefined);
      await pause(Math.max(0, everyMs - (Date.now() - at)));
    }
  }
}
