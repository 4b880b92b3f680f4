// `npm run bench`: pgbench throughput and select-1 latency, direct vs pgfloat vs pgbouncer vs haproxy, interleaved.

import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { findPgBinaries } from '../../src/postgres/binaries';
import { runBench } from '../lib/cleanup';
import { integer, readFlags } from '../lib/flags';
import { initialize, runWorkload, WORKLOADS } from '../lib/pgbench';
import { cpuSeconds } from '../lib/process-sample';
import { createSay, loadAverage, machine, resultFiles, writeResults } from '../lib/run-output';
import { measureLatency } from './latency';
import { latencyRows, markdown, throughputRows } from './report';
import { HAPROXY, PGBOUNCER, startBench, type Target } from './targets';

const OPTS = readFlags({ duration: integer(10, 1), rounds: integer(3, 1), scale: integer(10, 1), 'latency-queries': integer(20_000, 1) });
const FILES = resultFiles('throughput', OPTS);
const say = createSay();

/** The targets in a different order for every (round, workload) group, so drift hits all of them alike. */
function rotated(targets: Target[], group: number): Target[] {
  return targets.map((_, i) => targets[(i + group) % targets.length]!);
}

function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
  } catch {
    return 'unknown';
  }
}

/** One pgbench run of one workload on one target. */
interface PgbenchRun {
  round: number;
  workload: string;
  target: string;
  tps: number;
  transactions: number;
  wallSeconds: number;
  /** The proxy's CPU over the run, % of one core; null for direct. */
  cpuPercent: number | null;
}

async function main(): Promise<void> {
  const loadAtStart = loadAverage();
  // Anything else running on the machine skews the figures (interleaving spreads, not removes, it).
  say(`load average at start: ${loadAtStart}${loadavg()[0]! > 0.5 ? ' (the machine is busy: figures will be noisy)' : ''}`);
  say(`duration ${OPTS.duration} s, ${OPTS.rounds} rounds, scale ${OPTS.scale}, ${OPTS.latencyQueries} latency queries per target`);
  const bench = await startBench((m) => say(`cluster: ${m}`));
  const { targets } = bench;
  for (const note of bench.skipped) say(`skipped ${note}`);
  say(`targets: ${targets.map((t) => `${t.name} (port ${t.port})`).join(', ')}`);
  say(`pgbench -i -s ${OPTS.scale} on the primary`);
  await initialize(bench.cluster.primary.port, OPTS.scale);

  const runs: PgbenchRun[] = [];
  const latency = new Map<string, Float64Array[]>(targets.map((t) => [t.name, []]));
  let group = 0;
  for (let round = 1; round <= OPTS.rounds; round++) {
    for (const workload of WORKLOADS) {
      for (const target of rotated(targets, group++)) {
        const cpuBefore = target.pid === undefined ? undefined : cpuSeconds(target.pid);
        const t0 = process.hrtime.bigint();
        const result = await runWorkload(workload, target.port, OPTS.duration);
        const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
        const cpuAfter = target.pid === undefined ? undefined : cpuSeconds(target.pid);
        const cpuPercent = cpuBefore !== undefined && cpuAfter !== undefined ? ((cpuAfter - cpuBefore) / wallSeconds) * 100 : null;
        runs.push({ round, workload: workload.name, target: target.name, ...result, wallSeconds, cpuPercent });
        const cpuNote = cpuPercent === null ? '' : `, ${target.name} CPU ${cpuPercent.toFixed(0)}%`;
        say(`round ${round}/${OPTS.rounds} ${workload.name.padEnd(16)} ${target.name.padEnd(9)} ${result.tps.toFixed(0).padStart(7)} tps${cpuNote}`);
      }
    }
    const perRound = Math.ceil(OPTS.latencyQueries / OPTS.rounds);
    for (const target of rotated(targets, group++)) {
      latency.get(target.name)!.push(await measureLatency(target.port, perRound));
    }
    say(`round ${round}/${OPTS.rounds} latency: ${perRound} x select 1 per target`);
  }

  const byKey = (pick: (r: PgbenchRun) => number | null): Map<string, number[]> => {
    const out = new Map<string, number[]>();
    for (const r of runs) {
      const value = pick(r);
      const key = `${r.workload}\u0000${r.target}`;
      if (value !== null) out.set(key, [...(out.get(key) ?? []), value]);
    }
    return out;
  };
  const throughput = throughputRows(
    WORKLOADS.map((w) => w.name),
    targets.map((t) => t.name),
    byKey((r) => r.tps),
    byKey((r) => r.cpuPercent),
  );
  const lat = latencyRows(latency);
  const table = markdown(throughput, lat);
  process.stdout.write(`\n${table}\n\n`);
  for (const note of bench.skipped) process.stdout.write(`skipped ${note}\n`);

  const pg = findPgBinaries();
  const summary = {
    generatedAt: new Date().toISOString(),
    machine: machine(),
    loadAverage: { atStart: loadAtStart, atEnd: loadAverage() },
    versions: {
      postgres: pg ? firstLine(pg.path('postgres'), ['--version']) : 'unknown',
      pgbench: firstLine('pgbench', ['--version']),
      pgbouncer: firstLine(PGBOUNCER, ['--version']),
      haproxy: firstLine(HAPROXY, ['-v']),
    },
    options: { durationSeconds: OPTS.duration, rounds: OPTS.rounds, scale: OPTS.scale, latencyQueriesPerTarget: OPTS.latencyQueries },
    method: {
      interleaving: 'each round runs every workload on every target, target order rotated per (round, workload)',
      throughput: 'median pgbench TPS across rounds; vs direct = median / direct median of the same run',
      proxyCpu: 'utime+stime of the proxy process from /proc/<pid>/stat over the pgbench run, % of one core, median across rounds',
      latency: 'raw-socket client, simple Query "select 1" round trips timed with process.hrtime.bigint(), split across rounds, 1000 warm-up queries per connection',
    },
    targets: targets.map((t) => ({ name: t.name, setup: t.setup })),
    skipped: bench.skipped,
    throughput,
    latency: lat,
    markdown: table,
  };
  writeResults(FILES, { ...summary, pgbenchRuns: runs }, summary);
  say(`wrote ${FILES.summary} and ${FILES.raw}`);
}

runBench('bench', main);
