// `npm run bench:connections`: thousands of client connections held through pgfloat, idle then with paced traffic; memory and fds at each stage.

import { fork, type ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { Client } from 'pg';
import { onCleanup, runBench } from '../lib/cleanup';
import { integer, optionalInteger, readFlags, text, toggle } from '../lib/flags';
import { setUpPgfloat, type PgfloatEnv } from '../lib/pgfloat-env';
import { cpuSeconds, openFileLimit, sampleMetrics, sampleProcess, schedStat, serverCpuSeconds, serverMemory, settledSample, type MetricsSample, type ProcessSample } from '../lib/process-sample';
import { createSay, keepPgfloatLog, loadAverage, resultFiles, resultsHeader, writeResults } from '../lib/run-output';
import { CONNECTIONS_SCHEMA, type LoadCommand, type LoadReply, type OpenResult } from './load-generator';
import { connectionsSummary, stageTable, summaryLines, trafficTable, type Stage, type StageKind, type TrafficRun } from './report';

const OPTS = readFlags({
  connections: integer(2000, 1),
  step: integer(1000, 1),
  batch: integer(100, 1),
  'traffic-seconds': integer(60, 1),
  'interval-ms': integer(500, 1),
  'write-every': integer(10, 0),
  'settle-ms': integer(5000, 0),
  'shared-buffers': text('128MB'),
  'log-level': text('info'),
  'no-heap-probe': toggle(),
  'no-direct': toggle(),
  /** Run pgfloat under this open-files limit, to see how it fails when it runs out of descriptors. */
  'pgfloat-open-files': optionalInteger(64),
});
const FILES = resultFiles('connections', OPTS);
/** Room above the client connections for pgfloat's monitor, superuser_reserved_connections and our own checks. */
const SPARE_SERVER_CONNECTIONS = 50;
const OPEN_TIMEOUT_MS = 30_000;
/** Larger than pgfloat's per-session read buffer (64 kB), so the whole buffer gets written. */
const LARGE_RESULT_BYTES = 256 * 1024;

const say = createSay();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The load generator in its own process, so its CPU and memory are not pgfloat's and it gets its own share of the cores. */
class Generator {
  private readonly child: ChildProcess;
  private waiter: { resolve: (r: LoadReply) => void; reject: (e: Error) => void } | undefined;
  /** Connections that ended while held, by reason, over the whole run. */
  readonly lost: Record<string, number> = {};

  constructor() {
    this.child = fork(resolve(__dirname, 'load-generator.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const kill = (): void => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    };
    onCleanup(kill);
    process.on('exit', kill);
    this.child.on('message', (reply: LoadReply) => {
      if (reply.type === 'lost') {
        for (const [why, n] of Object.entries(reply.reasons)) this.lost[why] = (this.lost[why] ?? 0) + n;
        return;
      }
      const waiter = this.waiter;
      this.waiter = undefined;
      if (reply.type === 'error') waiter?.reject(new Error(`load generator: ${reply.message}`));
      else waiter?.resolve(reply);
    });
    this.child.on('exit', (code, signal) => this.waiter?.reject(new Error(`load generator exited (${code ?? signal})`)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  request<T extends LoadReply['type']>(command: LoadCommand, type: T): Promise<Extract<LoadReply, { type: T }>> {
    return new Promise((resolvePromise, reject) => {
      this.waiter = {
        resolve: (r) => (r.type === type ? resolvePromise(r as Extract<LoadReply, { type: T }>) : reject(new Error(`expected ${type}, got ${r.type}`))),
        reject,
      };
      this.child.send(command);
    });
  }

  async exit(): Promise<void> {
    this.child.send({ cmd: 'exit' } satisfies LoadCommand);
    await new Promise((r) => this.child.once('exit', r));
  }
}

/** Settles, then samples pgfloat (median of 5 over 4 s), its /metrics and the primary's processes. */
async function stage(env: PgfloatEnv, name: string, kind: StageKind): Promise<Stage> {
  await sleep(OPTS.settleMs);
  const proc = await settledSample(env.pgfloatPid, 5, 1000);
  const metrics = await sampleMetrics(env.adminUrl);
  // Last: the forced GC may shrink RSS, and the /proc figures above are the unforced ones.
  const live = env.heap ? await env.heap.liveHeap() : undefined;
  // RSS again once the GC has freed what closed sessions left (their read buffers among it): what the allocator keeps, not garbage.
  const afterGc = live ? await sleep(1000).then(() => settledSample(env.pgfloatPid, 3, 500)) : undefined;
  const pid = env.cluster.primary.postmasterPid();
  const server = pid === undefined ? { processes: 0, pssBytes: 0 } : serverMemory(pid);
  const s: Stage = { name, kind, at: proc.at, rssBytes: proc.rssBytes, rssAnonBytes: proc.rssAnonBytes, openFds: proc.openFds, ...metrics, liveHeapBytes: live?.usedBytes ?? null, rssAfterGcBytes: afterGc?.rssBytes ?? null, server };
  say(`${name}: ${metrics.clientConnections} clients, pgfloat RSS ${(proc.rssBytes / 1048576).toFixed(1)} MiB, heap ${(metrics.heapUsedBytes / 1048576).toFixed(1)} MiB (live ${live ? (live.usedBytes / 1048576).toFixed(1) : '?'}), fds ${proc.openFds}; primary ${server.processes} processes, PSS ${(server.pssBytes / 1048576).toFixed(0)} MiB`);
  return s;
}

/** Runs the traffic while sampling pgfloat every 2 s; the "with traffic" stage is the peak of those samples. */
async function traffic(env: PgfloatEnv, generator: Generator, label: string, runId: number): Promise<TrafficRun> {
  const samples: ProcessSample[] = [];
  const metrics: MetricsSample[] = [];
  let server = { processes: 0, pssBytes: 0 };
  let sampling = true;
  const postmaster = env.cluster.primary.postmasterPid();
  const sampler = (async () => {
    for (let i = 0; sampling; i++) {
      samples.push(sampleProcess(env.pgfloatPid));
      metrics.push(await sampleMetrics(env.adminUrl));
      // Once, half-way: reading 2,000 smaps_rollup files costs the server some CPU.
      if (i === Math.floor(OPTS.trafficSeconds / 4) && postmaster !== undefined) server = serverMemory(postmaster);
      await sleep(2000);
    }
  })();
  const cpu0 = { pgfloat: cpuSeconds(env.pgfloatPid) ?? 0, server: serverCpuSeconds(postmaster), at: Date.now(), sched: schedStat(env.pgfloatPid), gen: schedStat(generator.pid) };
  const result = await generator.request({ cmd: 'traffic', run: runId, seconds: OPTS.trafficSeconds, intervalMs: OPTS.intervalMs, writeEvery: OPTS.writeEvery }, 'traffic');
  const seconds = (Date.now() - cpu0.at) / 1000;
  const pgfloatCpuPercent = Math.round((((cpuSeconds(env.pgfloatPid) ?? 0) - cpu0.pgfloat) / seconds) * 100);
  const serverCpuPercent = Math.round(((serverCpuSeconds(postmaster) - cpu0.server) / seconds) * 100);
  const waited = (before: { waitNs: number }, pid: number): number => Math.round(((schedStat(pid).waitNs - before.waitNs) / 1e9 / seconds) * 100);
  const pgfloatWaitPercent = waited(cpu0.sched, env.pgfloatPid);
  const generatorWaitPercent = waited(cpu0.gen, generator.pid);
  const loadAverage = loadavg()[0]!;
  sampling = false;
  await sampler;
  const peak = <T>(items: T[], f: (x: T) => number): number => Math.max(...items.map(f));
  const last = metrics[metrics.length - 1]!;
  const stageAtPeak: Stage = {
    name: `${result.connections} clients with traffic ${label} (peak of ${samples.length} samples)`,
    kind: 'traffic',
    at: samples[0]!.at,
    rssBytes: peak(samples, (s) => s.rssBytes),
    rssAnonBytes: peak(samples, (s) => s.rssAnonBytes),
    openFds: peak(samples, (s) => s.openFds),
    heapUsedBytes: peak(metrics, (m) => m.heapUsedBytes),
    heapTotalBytes: peak(metrics, (m) => m.heapTotalBytes),
    externalBytes: peak(metrics, (m) => m.externalBytes),
    activeHandles: peak(metrics, (m) => m.activeHandles),
    liveHeapBytes: null,
    rssAfterGcBytes: null,
    clientConnections: last.clientConnections,
    server,
  };
  return { result, pgfloatCpuPercent, serverCpuPercent, pgfloatWaitPercent, generatorWaitPercent, loadAverage, samples, peak: stageAtPeak };
}

/** Rows the run through pgfloat wrote, read directly on the primary. */
async function countWrites(env: PgfloatEnv): Promise<number> {
  const client = new Client({ connectionString: env.cluster.primary.connectionString() });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>('select count(*)::text as n from conn_writes where run = 1');
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

/** After the clients close, pgfloat should get back to its baseline: no client left, server sockets closed. */
async function waitForDrain(env: PgfloatEnv, baselineFds: number, timeoutMs: number): Promise<number> {
  const startedAt = Date.now();
  while (Date.now() - startedAt < timeoutMs) {
    const m = await sampleMetrics(env.adminUrl);
    if (m.clientConnections === 0 && sampleProcess(env.pgfloatPid).openFds <= baselineFds) break;
    await sleep(200);
  }
  return Date.now() - startedAt;
}

async function main(): Promise<void> {
  const own = openFileLimit(process.pid);
  if (own.soft < OPTS.connections + 256) throw new Error(`the load generator needs ${OPTS.connections + 256} open files; ulimit -n is ${own.soft}: raise it first`);
  say(`load average at start: ${loadAverage()}; ${JSON.stringify(OPTS)}`);
  const maxConnections = OPTS.connections + SPARE_SERVER_CONNECTIONS;
  const env = await setUpPgfloat(
    {
      name: 'connections',
      serverConf: { max_connections: maxConnections, shared_buffers: OPTS.sharedBuffers },
      schema: CONNECTIONS_SCHEMA,
      managed: false,
      extraConfig: [`proxy: { maxClientConnections: ${Math.max(10_000, OPTS.connections + 100)} }`],
      openFilesNeeded: 2 * OPTS.connections + 512,
      openFilesLimit: OPTS.pgfloatOpenFiles,
      logLevel: OPTS.logLevel,
      heapProbe: !OPTS.noHeapProbe,
    },
    say,
  );
  say(`pgfloat pid ${env.pgfloatPid}, open files ${env.openFileLimit.soft}/${env.openFileLimit.hard} (${env.openFileNote}); rw :${env.readWritePort}`);
  const generator = new Generator();

  const stages: Stage[] = [await stage(env, 'baseline, no clients', 'baseline')];
  const opens: OpenResult[] = [];
  for (let held = 0; held < OPTS.connections; ) {
    const count = Math.min(OPTS.step, OPTS.connections - held);
    const opened = await generator.request({ cmd: 'open', port: env.readWritePort, count, batch: OPTS.batch, timeoutMs: OPEN_TIMEOUT_MS }, 'opened');
    opens.push(opened);
    held = opened.held;
    say(`opened ${opened.established}/${count} in ${opened.ms} ms (${Math.round((opened.established * 1000) / Math.max(1, opened.ms))}/s), holding ${held}` + (opened.failed ? `; failures: ${JSON.stringify(opened.errors)}` : ''));
    stages.push(await stage(env, `${held} idle clients`, 'idle'));
    if (opened.established === 0) break;
  }

  say(`traffic: every connection sends a query every ${OPTS.intervalMs} ms (every ${OPTS.writeEvery}th an insert) for ${OPTS.trafficSeconds} s`);
  const run = await traffic(env, generator, 'through pgfloat', 1);
  const r = run.result;
  sayTraffic('through pgfloat', run);
  stages.push(run.peak);
  stages.push(await stage(env, `${r.connections} idle clients after traffic`, 'after-traffic'));
  // pgfloat reads each server socket into a 64 kB buffer of its own; small answers touch a page or
  // two of it, one large answer makes all of it resident for the rest of the session.
  const large = await generator.request({ cmd: 'once', sql: `select repeat('x', ${LARGE_RESULT_BYTES})`, concurrency: OPTS.batch }, 'once');
  say(`one ${LARGE_RESULT_BYTES / 1024} kB result on each of ${large.ok} connections in ${large.ms} ms` + (Object.keys(large.errors).length ? `; errors ${JSON.stringify(large.errors)}` : ''));
  stages.push(await stage(env, `${r.connections} idle clients after one ${LARGE_RESULT_BYTES / 1024} kB result each`, 'after-large'));

  const closed = await generator.request({ cmd: 'close' }, 'closed');
  const drainMs = await waitForDrain(env, stages[0]!.openFds, 30_000);
  say(`closed ${closed.closed} in ${closed.ms} ms; pgfloat back to no clients in ${drainMs} ms`);
  stages.push(await stage(env, 'all clients closed', 'closed'));
  const rowsWritten = await countWrites(env);
  const direct = OPTS.noDirect ? undefined : await directRun(env, generator);
  await generator.exit();

  const summary = summaryLines(stages, opens, run, rowsWritten, generator.lost);
  const stageMd = stageTable(stages);
  const trafficMd = trafficTable(run, direct, OPTS.intervalMs, OPTS.writeEvery);
  write(env, { stages, opens, run, direct, rowsWritten, lost: generator.lost, maxConnections, markdown: { stages: stageMd, traffic: trafficMd, summary } });
  process.stdout.write(`\n${stageMd}\n\n${trafficMd}\n\n${summary}\n\n`);
  say(`wrote ${FILES.summary} and ${FILES.raw}; pgfloat's log copied to ${keepPgfloatLog(FILES, env.logFile)}`);
}

function sayTraffic(label: string, run: TrafficRun): void {
  const r = run.result;
  say(
    `traffic ${label}: ${Math.round(r.tps)} TPS of ${Math.round(r.offered / r.seconds)} offered, select p50 ${r.selects.p50Us} µs p99 ${r.selects.p99Us} µs; ` +
      `pgfloat CPU ${run.pgfloatCpuPercent}% (waited for a CPU ${run.pgfloatWaitPercent}%), PostgreSQL ${run.serverCpuPercent}%, generator ${r.generatorCpuPercent}% (waited ${run.generatorWaitPercent}%); ` +
      `load average ${run.loadAverage.toFixed(1)}; errors ${JSON.stringify(r.errors)}`,
  );
}

/** The same connections and traffic straight at the primary, in the same run: what the machine gives without pgfloat. */
async function directRun(env: PgfloatEnv, generator: Generator): Promise<TrafficRun> {
  const port = env.cluster.primary.port;
  const opened = await generator.request({ cmd: 'open', port, count: OPTS.connections, batch: OPTS.batch, timeoutMs: OPEN_TIMEOUT_MS }, 'opened');
  say(`direct: opened ${opened.established}/${OPTS.connections} to the primary in ${opened.ms} ms` + (opened.failed ? `; failures: ${JSON.stringify(opened.errors)}` : ''));
  await sleep(OPTS.settleMs);
  const run = await traffic(env, generator, 'direct', 2);
  sayTraffic('direct', run);
  await generator.request({ cmd: 'close' }, 'closed');
  return run;
}

function write(env: PgfloatEnv, results: { maxConnections: number; run: TrafficRun; direct: TrafficRun | undefined } & Record<string, unknown>): void {
  const doc = {
    ...resultsHeader(OPTS),
    method: {
      cluster: `fresh LocalCluster (PostgreSQL primary + async streaming standby), max_connections ${results.maxConnections}, shared_buffers ${OPTS.sharedBuffers}`,
      pgfloat: `separate \`pgfloat start\` process, log level ${OPTS.logLevel}; open files ${env.openFileLimit.soft} (${env.openFileNote}); pgfloat.yaml below`,
      generator: `a forked process with raw sockets (startup with trust auth, simple Query, no result parsing); connections opened ${OPTS.batch} at a time through the read-write port`,
      traffic: `every connection on a fixed schedule of one query per ${OPTS.intervalMs} ms (start times spread over the first interval), every ${OPTS.writeEvery}th an autocommit insert into conn_writes, the rest select 1; latency is send to ReadyForQuery`,
      memory: `pgfloat's VmRSS / RssAnon from /proc/<pid>/status, median of 5 samples 1 s apart after ${OPTS.settleMs} ms of settling; heap from /metrics; PostgreSQL is the primary's postmaster plus children, summed as PSS from smaps_rollup, and is not part of pgfloat's figure`,
      config: env.configText,
    },
    ...results,
  };
  writeResults(FILES, doc, connectionsSummary(doc));
}

runBench('bench:connections', main);
