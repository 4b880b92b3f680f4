// `npm run bench`: pgbench throughput and select-1 latency, direct vs pgfloat vs pgbouncer vs haproxy, interleaved.

import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { findPgBinaries } from '../../src/postgres/binaries';
import { runBench } from '../lib/cleanup';
import { integer, readFlags } from '../lib/flags';
import { initialize, runWorkload, WORKLOADS } from '../lib/pgbench';
import { clockTicksPerSecond, proxyCpu, type CpuTimes } from '../lib/process-sample';
import { createSay, loadAverage, machine, resultFiles, writeResults } from '../lib/run-output';
import { measureLatency } from './latency';
import { cpuShares, latencyRows, markdown, throughputRows, type PgbenchRun } from './report';
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

/** What the proxy's processes used between two readings. */
function cpuSpent(before: CpuTimes | undefined, after: CpuTimes | undefined): CpuTimes | null {
  if (before === undefined || after === undefined) return null;
  // to the µs, so the results hold 0.09 rather than 0.09000000000000001
  const spent = (a: number, b: number): number => Math.round((a - b) * 1e6) / 1e6;
  const byProcess = after.byProcess.map(({ pid, seconds }) => ({ pid, seconds: spent(seconds, before.byProcess.find((b) => b.pid === pid)?.seconds ?? 0) }));
  return { userSeconds: spent(after.userSeconds, before.userSeconds), systemSeconds: spent(after.systemSeconds, before.systemSeconds), processes: after.processes, byProcess };
}

/** The progress line's note on the proxy's CPU: % of a core and µs per transaction, split. */
function cpuNote(name: string, cpu: CpuTimes | null, wallSeconds: number, transactions: number): string {
  if (cpu === null) return '';
  const us = (seconds: number): string => ((seconds * 1e6) / Math.max(1, transactions)).toFixed(1);
  const percent = (((cpu.userSeconds + cpu.systemSeconds) / wallSeconds) * 100).toFixed(0);
  // Several processes (pgfloat's workers): what share of the work each one did.
  const shares = cpu.processes > 1 ? ` [by process: ${cpuShares(cpu).map((p) => `${p}%`).join(' / ')}]` : '';
  return `, ${name} CPU ${percent}% (${cpu.processes} proc), ${us(cpu.userSeconds + cpu.systemSeconds)} µs/txn = ${us(cpu.userSeconds)} user + ${us(cpu.systemSeconds)} sys${shares}`;
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
        const cpuBefore = target.pid === undefined ? undefined : proxyCpu([target.pid]);
        const t0 = process.hrtime.bigint();
        const result = await runWorkload(workload, target.port, OPTS.duration);
        const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
        const cpu = cpuSpent(cpuBefore, target.pid === undefined ? undefined : proxyCpu([target.pid]));
        runs.push({ round, workload: workload.name, target: target.name, ...result, wallSeconds, proxyCpu: cpu });
        const note = cpuNote(target.name, cpu, wallSeconds, result.transactions);
        say(`round ${round}/${OPTS.rounds} ${workload.name.padEnd(16)} ${target.name.padEnd(9)} ${result.tps.toFixed(0).padStart(7)} tps${note}`);
      }
    }
    const perRound = Math.ceil(OPTS.latencyQueries / OPTS.rounds);
    for (const target of rotated(targets, group++)) {
      latency.get(target.name)!.push(await measureLatency(target.port, perRound));
    }
    say(`round ${round}/${OPTS.rounds} latency: ${perRound} x select 1 per target`);
  }

  const throughput = throughputRows(
    WORKLOADS.map((w) => w.name),
    targets.map((t) => t.name),
    runs,
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
      proxyCpu:
        'utime and stime of the proxy process and all its descendants (found by the ppid in /proc/*/stat; a process\'s /proc/<pid>/stat covers all its threads, ' +
        'and cutime/cstime add descendants reaped meanwhile), read just before and just after each pgbench run, so the figures include the connection set-up ' +
        `and the proxy's own background work (pgfloat's monitor) over the run; in clock ticks of 1/${clockTicksPerSecond()} s, fine against runs of seconds. ` +
        '% of one core = CPU seconds / wall seconds of the run, median across rounds',
      proxyCpuPerTransaction:
        'user and system CPU µs divided by the transactions pgbench processed in that run; the row shows the round with the median total ' +
        '(the mean of the two middle rounds for an even count), so user + system = total',
      tpsPerProxyCore: '1e6 / total CPU µs per transaction: the TPS one core of proxy CPU would carry at that cost, if the proxy were the only limit and spread over cores',
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
