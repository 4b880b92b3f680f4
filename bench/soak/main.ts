// `npm run bench:soak`: minutes of mixed load through pgfloat with a switchover at 1/3 and a SIGKILL failover at 2/3; lost writes, fd and memory growth.

import { existsSync } from 'node:fs';
import { Client } from 'pg';
import { waitForStatus } from '../lib/admin-api';
import { runBench } from '../lib/cleanup';
import { decimal, integer, readFlags, text } from '../lib/flags';
import { MANAGED_CLUSTER_METHOD, setUpPgfloat, type PgfloatEnv } from '../lib/pgfloat-env';
import { readPgfloatLog } from '../lib/pgfloat-log';
import { OUTCOMES_METHOD } from '../lib/pooled-load';
import { createSay, keepPgfloatLog, loadAverage, resultFiles, resultsHeader, writeResults } from '../lib/run-output';
import { failover, Sampler, switchover, type FailoverEvent, type Samples, type SwitchoverEvent } from './events';
import { SOAK_SCHEMA, SoakLoad } from './load';
import { eventTable, events, minuteTable, phaseTable, phases, resourceTable, soakSummary, stallLine, summaryTable, writeStalls, windowFigures, type Verification, type WindowFigures } from './report';

const OPTS = readFlags({
  minutes: decimal(10, 1),
  writers: integer(8, 1),
  'write-rate': decimal(200, 1),
  readers: integer(4, 1),
  'read-rate': decimal(100, 0),
  'churn-rate': decimal(10, 0),
  'sample-ms': integer(2000, 100),
  'gc-every-ms': integer(30_000, 0),
  'settle-s': integer(30, 0),
  'log-level': text('info'),
});
const FILES = resultFiles('soak', OPTS);
const WINDOW_MS = 60_000;

const say = createSay();
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
async function verify(env: PgfloatEnv, load: SoakLoad, killedAt: number): Promise<Verification> {
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
  say(`load average at start: ${loadAverage()}; ${JSON.stringify(OPTS)}`);
  const env = await setUpPgfloat(
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
  const log = readPgfloatLog(env.logFile);
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
  say(`wrote ${FILES.summary} and ${FILES.raw}; pgfloat's log copied to ${keepPgfloatLog(FILES, env.logFile)}`);
}

/**
 * Where each lost write came from. A write the killed primary acknowledged after its postmaster
 * got SIGKILL was committed by a backend that had not noticed yet: with asynchronous replication
 * its WAL never left the dead server, whatever the proxy does.
 */
function lostLine(v: Verification, fo: FailoverEvent, env: PgfloatEnv): string {
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

/** `results`: what the run measured (events, verification, windows, samples, tables), after the method. */
function write<Results extends { samples: Samples }>(env: PgfloatEnv, results: Results): void {
  const doc = {
    ...resultsHeader(OPTS),
    method: {
      cluster: MANAGED_CLUSTER_METHOD,
      pgfloat: `separate \`pgfloat start\` process with the V8 inspector on 127.0.0.1 (for forced GCs), log level ${OPTS.logLevel}, defaults otherwise; open files: ${env.openFileNote}`,
      writers: `${OPTS.writers} pooled writers (one pg Pool) through the read-write port, ${OPTS.writeRate} transactions/s together on a fixed schedule: BEGIN; INSERT INTO soak_writes (client, seq, payload) RETURNING inet_server_port(); COMMIT, each its own round trip`,
      outcomes: OUTCOMES_METHOD,
      readers: `${OPTS.readers} pooled readers through the read-only port, ${OPTS.readRate}/s together: select max(seq) for a random writer`,
      churn: `${OPTS.churnRate} new unpooled connections per second (connect, select 1, close), alternating between the read-write and read-only ports`,
      events: 'at 1/3 of the run POST /switchover to the standby, followed to its end (the old primary rejoins as a standby); at 2/3 SIGKILL of the primary postmaster, then once /status routes to the standby, POST /rejoin/<old>, followed to its end',
      samples: `pgfloat's VmRSS, RssAnon and open fds from /proc every ${OPTS.sampleMs} ms, with /metrics (heap used, client connections); every ${OPTS.gcEveryMs} ms a full GC forced through the inspector and the live heap read`,
      windows: `first minute from ${OPTS.settleS} s after the load started, the minute around the middle, the last minute; medians`,
      lost: 'after the load stopped, every acknowledged (client, seq) looked up directly on the final primary; the rejoined standby must have every one the primary has',
      config: env.configText,
    },
    ...results,
  };
  writeResults(FILES, doc, soakSummary(doc));
}

runBench('bench:soak', main);
