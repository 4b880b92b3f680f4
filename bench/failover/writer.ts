// The failover benchmark's writer: one numbered row every few ms through pgfloat, reconnecting like a pool (or a multi-host client), every attempt recorded.

import { Client } from 'pg';

export const CREATE_TABLE =
  'create table failover_writes (id bigserial primary key, seq bigint not null unique, at timestamptz not null default clock_timestamp())';
const INSERT = 'insert into failover_writes (seq) values ($1) returning id, inet_server_port() as port';

export interface WriteAttempt {
  /** Unique per attempt, so each row says which attempt committed it. */
  seq: number;
  startedAt: number;
  endedAt: number;
  ok: boolean;
  /** The PostgreSQL port that committed it (which node), when acknowledged. */
  serverPort?: number;
  /** Index in `ports` of the pgfloat instance whose connection carried it (or refused last). */
  via?: number;
  error?: string;
}

export interface WriterOptions {
  /**
   * pgfloat's read-write port; with several (one per instance), each new connection tries them in
   * order, as libpq does with `host=a,b,c`: a refused connection or an error answering the startup
   * moves on to the next, and only a round in which every one failed is a failed attempt.
   */
  ports: readonly number[];
  /** Seqs are seqBase + 1, seqBase + 2, ...: several writers share the table. */
  seqBase?: number;
  /** One write starts every periodMs while writes succeed. */
  periodMs: number;
  /** After an error the connection is dropped and a new one is tried after this pause. */
  reconnectPauseMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Writer {
  readonly attempts: WriteAttempt[] = [];
  private stopping = false;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly opts: WriterOptions) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
  }

  acknowledged(): WriteAttempt[] {
    return this.attempts.filter((a) => a.ok);
  }

  private client(port: number): Client {
    const client = new Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      database: 'postgres',
      application_name: 'failover-bench-writer',
      // Bounds a hang the proxy does not end (it should: held clients wait failover.holdMs at most).
      connectionTimeoutMillis: 30_000,
      query_timeout: 30_000,
    });
    client.on('error', () => undefined);
    return client;
  }

  /** The first port in order that accepts a session, or the last one's error. */
  private async connect(attempt: WriteAttempt): Promise<{ client: Client; via: number }> {
    const ports = this.opts.ports;
    for (let via = 0; ; via++) {
      const client = this.client(ports[via]!);
      attempt.via = via;
      try {
        await client.connect();
        return { client, via };
      } catch (err) {
        client.end().catch(() => undefined);
        if (via === ports.length - 1 || this.stopping) throw err;
      }
    }
  }

  private async loop(): Promise<void> {
    let client: Client | undefined;
    let via = 0;
    let seq = this.opts.seqBase ?? 0;
    while (!this.stopping) {
      const attempt: WriteAttempt = { seq: ++seq, startedAt: Date.now(), endedAt: 0, ok: false, via };
      try {
        if (client === undefined) ({ client, via } = await this.connect(attempt));
        const { rows } = await client.query<{ id: string; port: number }>(INSERT, [attempt.seq]);
        attempt.ok = true;
        attempt.serverPort = rows[0]?.port;
      } catch (err) {
        attempt.error = (err as Error).message;
        client?.end().catch(() => undefined);
        client = undefined;
      }
      attempt.endedAt = Date.now();
      this.attempts.push(attempt);
      const wait = attempt.ok ? this.opts.periodMs - (attempt.endedAt - attempt.startedAt) : this.opts.reconnectPauseMs;
      if (wait > 0) await sleep(wait);
    }
    if (client) await Promise.race([client.end().catch(() => undefined), sleep(2000)]);
  }
}
