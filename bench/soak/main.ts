// `npm run bench:soak`: minutes of mixed load through pgfloat with a switchover at 1/3 and a SIGKILL failover at 2/3; lost writes, fd and memory growth.

import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { setUpLoad, type LoadEnv } from '../lib/pgfloat-env';
import { runBench } from '../lib/processes';
import { failover, Sampler, switchover, type FailoverEvent, type Samples, type SwitchoverEvent } from './events';
import { SOAK_SCHEMA, SoakLoad } from './load';
import { eventTable, events, minuteTable, phaseTable, phases, resourceTable, stallLine, summaryTable, writeStalls, windowFigures, type Verification, type WindowFigures } from './report';
import { readLogLines } from '../switchover/report';
import { waitForStatus } from '../switchover/setup';

const { values: flags } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    writers: { type: 'string', default: '8' },
    'write-rate': { type: 'string', default: '200' },
    readers: { type: 'string', default: '4' },
    'read-rate': { type: 'string', default: '100' },
    'churn-rate': { type: 'string', default: '10' },
    'sample-ms': { type: 'string', default: '2000' },
    'gc-every-ms': { type: 'string', default: '30000' },
    'settle-s': { type: 'string', default: '30' },
    'log-level': { type: 'string', default: 'info' },
    out: { type: 'string', default: resolve(__dirname, '../../../bench/results/soak-latest.json') },
  },
});
const num = (name: keyof typeof flags, min: number): number => {
  const v = Number(flags[name]);
  if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number >= ${min}, got ${String(flags[name])}`);
  return v;
};
const OPTS = {
  minutes: num('minutes', 1),
  writers: num('writers', 1),
  writeRate: num('write-rate', 1),
  readers: num('readers', 1),
  readRate: num('read-rate', 0),
  churnRate: num('churn-rate', 0),
  sampleMs: num('sample-ms', 100),
  gcEveryMs: num('gc-every-ms', 0),
  settleS: num('settle-s', 0),
  logLevel: String(flags['log-level']),
};
const WINDOW_MS = 60_000;

const started = Date.now();
const say = (message: string): void => {
  process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
};
const sleepUntil = (at: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));

async function keysOn(connectionString: string): Promise<Set<string>> {
  const client = new Client({ connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ client: number; seq: number }>('select client, seq from soak_writes');
    return new Set(rows.map((r) => `${r.client}/${r.seq}`));
  } finally {
    await client.end();
  }
}

/** Every acknowledged write on the final primary, read directly; the rejoined standby must get them all too. */
async function verify(env: LoadEnv, load: SoakLoad, killedAt: number): Promise<Verification> {
  const st = await waitForStatus(env, (s) => s.primary !== null, 60_000, 'a primary');
  const primary = env.cluster.nodes.find((n) => n.name === st.primary)!;
  const standby = env.cluster.nodes.find((n) => n.name !== st.primary)!;
  const keys = await keysOn(primary.connectionString());
  const key = (w: { client: number; seq: number }): string => `${w.client}/${w.seq}`;
  const acks = load.log.acks;
  let standbyHasAll = false;
  for (const deadline = Date.now() + 60_000; !standbyHasAll && Date.now() < deadline; ) {
    const onStandby = await keysOn(standby.connectionString()).catch(() => new Set<string>());
    standbyHasAll = acks.every((a) => !keys.has(key(a)) || onStandby.has(key(a)));
    if (!standbyHasAll) await new Promise((r) => setTimeout(r, 1000));
  }
  return {
    finalPrimary: primary.name,
    finalStandby: standby.name,
    rowsOnPrimary: keys.size,
    lost: acks.filter((a) => !keys.has(key(a))).map((a) => ({ client: a.client, seq: a.seq, port: a.port, msAfterKill: a.at - killedAt })),
    unknownCommitted: load.log.unknown.filter((u) => keys.has(key(u))).length,
    failedButPresent: load.log.failed.filter((f) => keys.has(key(f))).length,
    standbyHasEveryAcknowledgedWrite: standbyHasAll,
  };
}

async function main(): Promise<void> {
  say(`load average at start: ${loadavg().map((v) => v.toFixed(2)).join(' ')}; ${JSON.stringify(OPTS)}`);
  const env = await setUpLoad(
    { name: 'soak', serverConf: {}, schema: SOAK_SCHEMA, managed: true, extraConfig: [], openFilesNeeded: 4096, logLevel: OPTS.logLevel, heapProbe: true },
    say,
  );
  say(`pgfloat pid ${env.pgfloatPid} (${env.openFileNote}), rw :${env.readWritePort} ro :${env.readOnlyPort}; ${env.cluster.nodes.map((n) => `${n.name}:${n.port}`).join(' ')}`);

  const sampler = new Sampler(env, OPTS.sampleMs, OPTS.gcEveryMs);
  const load = new SoakLoad({ readWritePort: env.readWritePort, readOnlyPort: env.readOnlyPort, ...OPTS });
  const loadStart = Date.now();
  const loadEnd = loadStart + OPTS.minutes * 60_000;
  say(`load: ${OPTS.writers} writers at ${OPTS.writeRate} tx/s, ${OPTS.readers} readers at ${OPTS.readRate}/s, ${OPTS.churnRate} short sessions/s, for ${OPTS.minutes} min`);

  await sleepUntil(loadStart + (loadEnd - loadStart) / 3);
  progress(load, loadStart);
  const sw: SwitchoverEvent = await switchover(env, say);
  say(`switchover ${sw.from}→${sw.to}: ${sw.operation.state} in ${sw.endedAt - sw.requestedAt} ms: ${sw.operation.result}`);
  await sleepUntil(loadStart + ((loadEnd - loadStart) * 2) / 3);
  progress(load, loadStart);
  const fo: FailoverEvent = await failover(env, say);
  await sleepUntil(loadEnd);
  progress(load, loadStart);
  await load.stop();
  const stoppedAt = Date.now();
  const samples = await sampler.stop();
  const pgfloatAlive = existsSync(`/proc/${env.pgfloatPid}`);

  const verification = await verify(env, load, fo.killedAt);
  const mid = (loadStart + loadEnd) / 2;
  const windows: WindowFigures[] = [
    windowFigures('first minute', samples, loadStart + OPTS.settleS * 1000, loadStart + OPTS.settleS * 1000 + WINDOW_MS),
    windowFigures('middle minute', samples, mid - WINDOW_MS / 2, mid + WINDOW_MS / 2),
    windowFigures('last minute', samples, loadEnd - WINDOW_MS, loadEnd),
  ];
  const phaseRecords = phases(loadStart, stoppedAt, sw, fo, load.log, load.reads, load.churn);
  const eventRecords = events(sw, fo, load.log);
  const stalls = writeStalls(load.log.acks, sw, fo, samples);
  const log = readLogLines(env.logFile);
  const loud = log.filter((l) => l.level >= 40 && l.at >= loadStart);
  const logCounts: Record<string, number> = {};
  for (const l of loud) {
    const line = `${l.level >= 50 ? 'error' : 'warn'} ${l.component}: ${l.msg}`;
    logCounts[line] = (logCounts[line] ?? 0) + 1;
  }

  const minutes = (stoppedAt - loadStart) / 60_000;
  const markdown = {
    summary: summaryTable(minutes, load.log, load.reads, load.churn, verification),
    events: eventTable(eventRecords),
    phases: phaseTable(phaseRecords),
    resources: resourceTable(windows, loadStart),
    minutes: minuteTable(samples, loadStart, stoppedAt),
    stalls: stallLine(stalls, samples, loadStart),
  };
  write(env, { loadStart, stoppedAt, pgfloatAlive, sw, fo, verification, windows, phaseRecords, eventRecords, stalls, samples, logCounts, markdown });
  process.stdout.write(
    `\n${markdown.summary}\n\n${markdown.events}\n\n${markdown.phases}\n\n${markdown.stalls}\n\npgfloat (pid ${env.pgfloatPid}, ${pgfloatAlive ? 'still running' : 'GONE'}), sampled every ${OPTS.sampleMs} ms, a forced full GC every ${OPTS.gcEveryMs} ms:\n\n${markdown.resources}\n\nMinute by minute (medians):\n\n${markdown.minutes}\n\n` +
      `Peak over the run: RSS ${Math.max(...samples.process.map((s) => s.rssBytes)) / 1048576 | 0} MiB, open fds ${Math.max(...samples.process.map((s) => s.openFds))}; sampling errors ${samples.errors.length}; ` +
      `pgfloat's event loop waited for a CPU ${waitSummary(samples)} of each ${OPTS.sampleMs} ms interval.\n` +
      lostLine(verification, fo, env) +
      `pgfloat warn/error lines during the load: ${JSON.stringify(logCounts, null, 1)}\n\n`,
  );
  const kept = join(tmpdir(), 'pgfloat-soak-last.log');
  copyFileSync(env.logFile, kept);
  say(`wrote ${flags.out}; pgfloat's log copied to ${kept}`);
}

/**
 * Where each lost write came from. A write the killed primary acknowledged after its postmaster
 * got SIGKILL was committed by a backend that had not noticed yet: with asynchronous replication
 * its WAL never left the dead server, whatever the proxy does.
 */
function lostLine(v: Verification, fo: FailoverEvent, env: LoadEnv): string {
  if (v.lost.length === 0) return '';
  const killedPort = env.cluster.nodes.find((n) => n.name === fo.from)!.port;
  const afterKill = v.lost.filter((l) => l.port === killedPort && l.msAfterKill >= 0);
  const before = v.lost.filter((l) => l.port === killedPort && l.msAfterKill < 0);
  const other = v.lost.filter((l) => l.port !== killedPort);
  return (
    `Lost acknowledged writes: ${v.lost.length}; ${afterKill.length} acknowledged by the killed primary ${fo.from} ${afterKill.map((l) => l.msAfterKill).join(', ')} ms after the SIGKILL, ` +
    `${before.length} by it before the kill (the asynchronous replication window)${other.length ? `, ${other.length} ELSEWHERE: ${JSON.stringify(other)}` : ''}.\n`
  );
}

function waitSummary(samples: Samples): string {
  const sorted = samples.pgfloatWait.map((w) => w.percent).sort((a, b) => a - b);
  if (sorted.length === 0) return 'an unknown share';
  return `median ${sorted[Math.floor(sorted.length / 2)]}%, p90 ${sorted[Math.floor(sorted.length * 0.9)]}%, max ${sorted[sorted.length - 1]}%`;
}

function progress(load: SoakLoad, loadStart: number): void {
  const l = load.log;
  say(`  ${Math.round((Date.now() - loadStart) / 1000)} s: ${l.acks.length} writes acknowledged, ${l.failed.length} failed, ${l.unknown.length} unknown; ${load.reads.length} reads, ${load.churn.length} short sessions`);
}

interface Results {
  loadStart: number;
  stoppedAt: number;
  pgfloatAlive: boolean;
  sw: SwitchoverEvent;
  fo: FailoverEvent;
  verification: Verification;
  windows: WindowFigures[];
  phaseRecords: unknown;
  eventRecords: unknown;
  stalls: unknown;
  samples: Samples;
  logCounts: Record<string, number>;
  markdown: Record<string, string>;
}

function write(env: LoadEnv, r: Results): void {
  const out = {
    generatedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem(), kernel: release(), node: process.version },
    loadAverageAtEnd: loadavg(),
    options: OPTS,
    method: {
      cluster: 'one LocalCluster (PostgreSQL primary + async streaming standby, wal_log_hints on) for the whole run; both nodes managed by pgfloat (nodes[].dataDir)',
      pgfloat: `separate \`pgfloat start\` process with the V8 inspector on 127.0.0.1 (for forced GCs), log level ${OPTS.logLevel}, defaults otherwise; open files: ${env.openFileNote}`,
      writers: `${OPTS.writers} pooled writers (one pg Pool) through the read-write port, ${OPTS.writeRate} transactions/s together on a fixed schedule: BEGIN; INSERT INTO soak_writes (client, seq, payload) RETURNING inet_server_port(); COMMIT, each its own round trip`,
      outcomes: 'acknowledged: COMMIT answered; failed: an error before COMMIT was sent, or a non-FATAL error answering it; unknown: COMMIT sent, then the connection lost or a FATAL',
      readers: `${OPTS.readers} pooled readers through the read-only port, ${OPTS.readRate}/s together: select max(seq) for a random writer`,
      churn: `${OPTS.churnRate} new unpooled connections per second (connect, select 1, close), alternating between the read-write and read-only ports`,
      events: 'at 1/3 of the run POST /switchover to the standby, followed to its end (the old primary rejoins as a standby); at 2/3 SIGKILL of the primary postmaster, then once /status routes to the standby, POST /rejoin/<old>, followed to its end',
      samples: `pgfloat's VmRSS, RssAnon and open fds from /proc every ${OPTS.sampleMs} ms, with /metrics (heap used, client connections); every ${OPTS.gcEveryMs} ms a full GC forced through the inspector and the live heap read`,
      windows: `first minute from ${OPTS.settleS} s after the load started, the minute around the middle, the last minute; medians`,
      lost: 'after the load stopped, every acknowledged (client, seq) looked up directly on the final primary; the rejoined standby must have every one the primary has',
      config: env.configText,
    },
    ...r,
  };
  mkdirSync(dirname(flags.out!), { recursive: true });
  writeFileSync(flags.out!, JSON.stringify(out, null, 2) + '\n');
}

runBench('bench:soak', main);
