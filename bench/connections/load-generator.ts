// The connection benchmark's load generator, run as its own process (fork): holds many raw connections and drives paced traffic on them.

import { queryMessage } from '../../src/protocol/client-messages';
import { cpuSeconds } from '../lib/process-sample';
import { percentile } from '../lib/stats';
import { WireConnection } from '../lib/wire-client';

/** Created on the primary before the run: the small write some of the traffic does. */
export const CONNECTIONS_SCHEMA = [
  'create table conn_writes (run int not null, conn int not null, seq int not null, at timestamptz not null default clock_timestamp(), primary key (run, conn, seq))',
];

export type LoadCommand =
  | { cmd: 'open'; port: number; count: number; batch: number; timeoutMs: number }
  /** `run` keys the rows written, so several traffic runs can share the table. */
  | { cmd: 'traffic'; run: number; seconds: number; intervalMs: number; writeEvery: number }
  /** One query on every held connection, `concurrency` at a time (a large result, say). */
  | { cmd: 'once'; sql: string; concurrency: number }
  | { cmd: 'close' }
  | { cmd: 'exit' };

export interface OpenResult {
  type: 'opened';
  requested: number;
  established: number;
  failed: number;
  errors: Record<string, number>;
  ms: number;
  /** Connections open now, after this step (earlier steps included). */
  held: number;
}

export interface LatencySummary {
  count: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export interface TrafficResult {
  type: 'traffic';
  seconds: number;
  connections: number;
  /** Queries the schedule asked for (connections x seconds / interval). */
  offered: number;
  completed: number;
  writesAcknowledged: number;
  errors: Record<string, number>;
  tps: number;
  selects: LatencySummary;
  writes: LatencySummary;
  /** How late queries were sent against their schedule: the generator's own saturation. */
  sendLagP99Ms: number;
  sendLagMaxMs: number;
  /** CPU the generator used during the traffic, % of one core. */
  generatorCpuPercent: number;
}

export interface OnceResult {
  type: 'once';
  ok: number;
  errors: Record<string, number>;
  ms: number;
}

export interface CloseResult {
  type: 'closed';
  closed: number;
  ms: number;
}

export interface LostReport {
  type: 'lost';
  /** Connections that ended without us closing them, by reason, since the last report. */
  reasons: Record<string, number>;
}

export type LoadReply = OpenResult | TrafficResult | OnceResult | CloseResult | LostReport | { type: 'error'; message: string };

const SELECT = queryMessage('select 1');
const tally = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

function summarize(samples: number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  const at = (p: number): number => (sorted.length === 0 ? 0 : Math.round(percentile(sorted, p)));
  return { count: sorted.length, p50Us: at(50), p90Us: at(90), p99Us: at(99), p999Us: at(99.9), maxUs: at(100) };
}

class Generator {
  private readonly conns: WireConnection[] = [];
  private lost: Record<string, number> = {};

  constructor(private readonly reply: (r: LoadReply) => void) {}

  async open(cmd: Extract<LoadCommand, { cmd: 'open' }>): Promise<OpenResult> {
    const started = Date.now();
    const errors: Record<string, number> = {};
    let established = 0;
    for (let done = 0; done < cmd.count; done += cmd.batch) {
      const size = Math.min(cmd.batch, cmd.count - done);
      const batch = await Promise.allSettled(Array.from({ length: size }, (_, i) => WireConnection.open(cmd.port, `conn-bench-${this.conns.length + done + i}`, cmd.timeoutMs)));
      for (const r of batch) {
        if (r.status === 'fulfilled') {
          established++;
          r.value.onLost = (why) => tally(this.lost, why);
          this.conns.push(r.value);
        } else tally(errors, r.reason instanceof Error ? r.reason.message : String(r.reason));
      }
    }
    this.flushLost();
    return { type: 'opened', requested: cmd.count, established, failed: cmd.count - established, errors, ms: Date.now() - started, held: this.conns.filter((c) => c.open).length };
  }

  /**
   * Every connection runs on its own fixed schedule (one query per intervalMs, start times spread
   * over the first interval), so the offered rate does not drop when latency rises. A query due
   * while the previous one is still out is sent when that one ends, and the lateness is recorded.
   */
  async traffic(cmd: Extract<LoadCommand, { cmd: 'traffic' }>): Promise<TrafficResult> {
    const live = this.conns.filter((c) => c.open);
    const selects: number[] = [];
    const writes: number[] = [];
    const sendLag: number[] = [];
    const errors: Record<string, number> = {};
    let writesAcknowledged = 0;
    const cpuBefore = cpuSeconds(process.pid) ?? 0;
    const start = Date.now();
    const end = start + cmd.seconds * 1000;
    const loop = async (conn: WireConnection, index: number): Promise<void> => {
      let due = start + (index / live.length) * cmd.intervalMs;
      for (let n = 1; ; n++) {
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (due >= end || !conn.open) return;
        sendLag.push(Math.max(0, Date.now() - due));
        const isWrite = cmd.writeEvery > 0 && n % cmd.writeEvery === 0;
        const message = isWrite ? queryMessage(`insert into conn_writes (run, conn, seq) values (${cmd.run}, ${index}, ${n})`) : SELECT;
        const t0 = process.hrtime.bigint();
        try {
          const { error } = await conn.query(message);
          const us = Number(process.hrtime.bigint() - t0) / 1000;
          if (error) tally(errors, `${error.code} ${error.message}`);
          else if (isWrite) {
            writes.push(us);
            writesAcknowledged++;
          } else selects.push(us);
        } catch (err) {
          tally(errors, (err as Error).message);
          return;
        }
        due += cmd.intervalMs;
      }
    };
    await Promise.all(live.map((c, i) => loop(c, i)));
    const seconds = (Date.now() - start) / 1000;
    const cpu = ((cpuSeconds(process.pid) ?? 0) - cpuBefore) / seconds;
    this.flushLost();
    const lag = Float64Array.from(sendLag).sort();
    return {
      type: 'traffic',
      seconds,
      connections: live.length,
      offered: Math.round((live.length * cmd.seconds * 1000) / cmd.intervalMs),
      completed: selects.length + writes.length,
      writesAcknowledged,
      errors,
      tps: (selects.length + writes.length) / seconds,
      selects: summarize(selects),
      writes: summarize(writes),
      sendLagP99Ms: lag.length ? percentile(lag, 99) : 0,
      sendLagMaxMs: lag.length ? lag[lag.length - 1]! : 0,
      generatorCpuPercent: Math.round(cpu * 1000) / 10,
    };
  }

  async once(cmd: Extract<LoadCommand, { cmd: 'once' }>): Promise<OnceResult> {
    const started = Date.now();
    const live = this.conns.filter((c) => c.open);
    const message = queryMessage(cmd.sql);
    const errors: Record<string, number> = {};
    let ok = 0;
    for (let i = 0; i < live.length; i += cmd.concurrency) {
      await Promise.all(
        live.slice(i, i + cmd.concurrency).map(async (conn) => {
          try {
            const { error } = await conn.query(message);
            if (error) tally(errors, `${error.code} ${error.message}`);
            else ok++;
          } catch (err) {
            tally(errors, (err as Error).message);
          }
        }),
      );
    }
    this.flushLost();
    return { type: 'once', ok, errors, ms: Date.now() - started };
  }

  async close(): Promise<CloseResult> {
    const started = Date.now();
    const open = this.conns.filter((c) => c.open);
    await Promise.all(open.map((c) => c.terminate()));
    this.conns.length = 0;
    this.flushLost();
    return { type: 'closed', closed: open.length, ms: Date.now() - started };
  }

  private flushLost(): void {
    if (Object.keys(this.lost).length === 0) return;
    this.reply({ type: 'lost', reasons: this.lost });
    this.lost = {};
  }
}

if (require.main === module) {
  if (process.send === undefined) throw new Error('the load generator runs as a forked child of bench/connections/main');
  const reply = (r: LoadReply): void => void process.send!(r);
  const generator = new Generator(reply);
  // One command at a time: the parent waits for each answer before sending the next.
  process.on('message', (message: LoadCommand) => {
    const run = async (): Promise<LoadReply | undefined> => {
      switch (message.cmd) {
        case 'open':
          return generator.open(message);
        case 'traffic':
          return generator.traffic(message);
        case 'once':
          return generator.once(message);
        case 'close':
          return generator.close();
        case 'exit':
          process.exit(0);
      }
    };
    run().then(
      (r) => r && reply(r),
      (err: unknown) => reply({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
    );
  });
}
