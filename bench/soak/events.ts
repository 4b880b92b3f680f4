// The soak's two events (a switchover; a SIGKILL of the primary, then its rejoin) and the sampler that watches pgfloat throughout.

import { runOperation, steadyWithStandby, switchoverToStandby, waitForStatus, type OperationView, type SwitchoverRun } from '../lib/admin-api';
import { inject } from '../lib/faults';
import type { PgfloatEnv } from '../lib/pgfloat-env';
import { sampleMetrics, sampleProcess, schedStat, type MetricsSample, type ProcessSample } from '../lib/process-sample';
import type { Say } from '../lib/run-output';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A refused operation (the last rejoined standby not streaming yet, say) is asked again this often, this many times. */
const RETRY = { pauseMs: 1000, attempts: 30 };

export interface SwitchoverEvent extends SwitchoverRun {
  kind: 'switchover';
  /** The operation's end (the old primary's rejoin included). */
  endedAt: number;
}

export interface FailoverEvent {
  kind: 'failover';
  from: string;
  to: string;
  toPort: number;
  /** Just before the SIGKILL of the primary's postmaster. */
  killedAt: number;
  /** When /status first named the new primary (polled every 100 ms). */
  routedAt: number | null;
  rejoinRequestedAt: number | null;
  rejoinRefusals: string[];
  rejoin: OperationView | null;
  endedAt: number;
}

export type SoakEvent = SwitchoverEvent | FailoverEvent;

export async function switchover(env: PgfloatEnv, say: Say): Promise<SwitchoverEvent> {
  const run = await switchoverToStandby(env, env.cluster.nodes, RETRY, (from, to, id) => say(`switchover ${from}→${to} requested (operation ${id})`));
  return { kind: 'switchover', ...run, endedAt: Date.now() };
}

/** SIGKILL of the primary's postmaster; once pgfloat routes to the standby, POST /rejoin/<old> makes the pair whole again. */
export async function failover(env: PgfloatEnv, say: Say): Promise<FailoverEvent> {
  const from = (await waitForStatus(env, steadyWithStandby, 120_000, 'a steady cluster with a standby')).primary!;
  const old = env.cluster.nodes.find((n) => n.name === from)!;
  const to = env.cluster.nodes.find((n) => n.name !== from)!;
  const fault = inject('sigkill', old);
  say(`SIGKILL of ${old.name}'s postmaster (pid ${fault.pids[0]})`);
  const event: FailoverEvent = { kind: 'failover', from: old.name, to: to.name, toPort: to.port, killedAt: fault.at, routedAt: null, rejoinRequestedAt: null, rejoinRefusals: [], rejoin: null, endedAt: 0 };
  try {
    await waitForStatus(env, (st) => st.primary === to.name, 60_000, `pgfloat to route writes to ${to.name}`);
    event.routedAt = Date.now();
    say(`pgfloat routes writes to ${to.name} ${event.routedAt - fault.at} ms after the kill`);
  } catch (err) {
    say(`no failover: ${(err as Error).message}`);
    event.endedAt = Date.now();
    return event;
  }
  const rejoin = await runOperation(env, `/rejoin/${encodeURIComponent(old.name)}`, {}, RETRY);
  event.rejoinRequestedAt = rejoin.requestedAt;
  event.rejoinRefusals = rejoin.refusals;
  event.rejoin = rejoin.operation;
  if (rejoin.operation === null) say(`rejoin of ${old.name} refused ${rejoin.refusals.length} times: ${rejoin.refusals.join('; ')}`);
  else say(`rejoin of ${old.name}: ${rejoin.operation.state} in ${Date.now() - rejoin.requestedAt} ms: ${rejoin.operation.result}`);
  event.endedAt = Date.now();
  return event;
}

export interface LiveHeapSample {
  at: number;
  usedBytes: number;
  gcMs: number;
}

export interface Samples {
  process: ProcessSample[];
  metrics: Array<MetricsSample & { at: number }>;
  liveHeap: LiveHeapSample[];
  /**
   * Times the sampler itself ran more than a second late: the bench process did not run (the
   * machine starved it, or the virtual machine was paused). Everything stalls then, pgfloat too,
   * so write stalls inside these are not pgfloat's.
   */
  benchStalls: Array<{ from: number; to: number; lateMs: number }>;
  /** pgfloat's event loop: share of each interval spent waiting for a CPU (schedstat). */
  pgfloatWait: Array<{ at: number; percent: number }>;
  /** Samples that failed (pgfloat gone, admin API not answering), with the reason. */
  errors: Array<{ at: number; message: string }>;
}

/**
 * Samples pgfloat from /proc every `everyMs` and its /metrics with it; every `gcEveryMs` forces a
 * full GC through the inspector and records the live heap (a ~10-50 ms pause in pgfloat each time).
 */
export class Sampler {
  readonly samples: Samples = { process: [], metrics: [], liveHeap: [], benchStalls: [], pgfloatWait: [], errors: [] };
  private running = true;
  private readonly done: Promise<void>;

  constructor(env: PgfloatEnv, everyMs: number, gcEveryMs: number) {
    this.done = (async () => {
      let lastGc = 0;
      let previous: { at: number; sched: { waitNs: number } } | undefined;
      while (this.running) {
        const at = Date.now();
        try {
          const sched = schedStat(env.pgfloatPid);
          if (previous !== undefined) {
            const lateMs = at - previous.at - everyMs;
            if (lateMs > 1000) this.samples.benchStalls.push({ from: previous.at, to: at, lateMs });
            this.samples.pgfloatWait.push({ at, percent: Math.round(((sched.waitNs - previous.sched.waitNs) / 1e6 / (at - previous.at)) * 100) });
          }
          previous = { at, sched };
          this.samples.process.push(sampleProcess(env.pgfloatPid));
          this.samples.metrics.push({ at, ...(await sampleMetrics(env.adminUrl)) });
          if (env.heap && gcEveryMs > 0 && at - lastGc >= gcEveryMs) {
            lastGc = at;
            const live = await env.heap.liveHeap();
            this.samples.liveHeap.push({ at, usedBytes: live.usedBytes, gcMs: live.gcMs });
          }
        } catch (err) {
          this.samples.errors.push({ at, message: (err as Error).message });
        }
        await sleep(Math.max(0, everyMs - (Date.now() - at)));
      }
    })();
  }

  async stop(): Promise<Samples> {
    this.running = false;
    await this.done;
    return this.samples;
  }
}
