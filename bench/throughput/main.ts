// `npm run bench`: pgbench throughput and select-1 latency, direct vs pgfloat vs pgbouncer vs haproxy, interleaved.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { findPgBinaries } from '../../src/sandbox/pg-binaries';
import { measureLatency } from './latency';
import { initialize, runWorkload, WORKLOADS } from '../lib/pgbench';
import { cpuSeconds, runBench } from '../lib/processes';
import { latencyRows, markdown, throughputRows } from './report';
import { HAPROXY, PGBOUNCER, startBench, type Target } from './targets';

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    scale: { type: 'string', default: '10' },
    'latency-queries': { type: 'string', default: '20000' },
    out: { type: 'string', default: resolve(__dirname, '../../../bench/results/latest.json') },
  },
});
const duration = Number(flags.duration);
const rounds = Number(flags.rounds);
const scale = Number(flags.scale);
const latencyQueries = Number(flags['latency-queries']);

const started = Date.now();
const say = (message: string): void => {
  process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
};

/** The targets in a different order for every (round, workload) group, so drift hits all of them alike. */
function rotated(targets: Target[], group: number): Target[] {
  return targets.map((_, i) => targets[(i + group) % targets.length]);
}

function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0].trim();
  } catch {
    return 'unknown';
  }
}

const load = (): string => loadavg().map((v) => v.toFixed(2)).join(' ');

async function main(): Promise<void> {
  const loadAtStart = load();
  // Anything else running on the machine skews the figures (interleaving spreads, not removes, it).
  say(`load average at start: ${loadAtStart}${loadavg()[0] > 0.5 ? ' (the machine is busy: figures will be noisy)' : ''}`);
  say(`duration ${duration} s, ${rounds} rounds, scale ${scale}, ${latencyQueries} latency queries per target`);
  const bench = await startBench((m) => say(`cluster: ${m}`));
  const { targets } = bench;
  for (const note of bench.skipped) say(`skipped ${note}`);
  say(`targets: ${targets.map((t) => `${t.name} (port ${t.port})`).join(', ')}`);
  say(`pgbench -i -s ${scale} on the primary`);
  await initialize(bench.cluster.primary.port, scale);

  const tps = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const latency = new Map<string, Float64Array[]>(targets.map((t) => [t.name, []]));
  const push = <T>(map: Map<string, T[]>, key: string, value: T): void => void map.set(key, [...(map.get(key) ?? []), value]);
  let group = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const workload of WORKLOADS) {
      for (const target of rotated(targets, group++)) {
        const cpuBefore = target.pid === undefined ? undefined : cpuSeconds(target.pid);
        const t0 = process.hrtime.bigint();
        const result = await runWorkload(workload, target.port, duration);
        const wall = Number(process.hrtime.bigint() - t0) / 1e9;
        const cpuAfter = target.pid === undefined ? undefined : cpuSeconds(target.pid);
        const key = `${workload.name}\u0000${target.name}`;
        push(tps, key, result.tps);
        let cpuNote = '';
        if (cpuBefore !== undefined && cpuAfter !== undefined) {
          const percent = ((cpuAfter - cpuBefore) / wall) * 100;
          push(cpu, key, percent);
          cpuNote = `, ${target.name} CPU ${percent.toFixed(0)}%`;
        }
        say(`round ${round}/${rounds} ${workload.name.padEnd(16)} ${target.name.padEnd(9)} ${result.tps.toFixed(0).padStart(7)} tps${cpuNote}`);
      }
    }
    const perRound = Math.ceil(latencyQueries / rounds);
    for (const target of rotated(targets, group++)) {
      latency.get(target.name)!.push(await measureLatency(target.port, perRound));
    }
    say(`round ${round}/${rounds} latency: ${perRound} x select 1 per target`);
  }

  const throughput = throughputRows(
    WORKLOADS.map((w) => w.name),
    targets.map((t) => t.name),
    tps,
    cpu,
  );
  const lat = latencyRows(latency);
  const table = markdown(throughput, lat);
  process.stdout.write(`\n${table}\n\n`);
  for (const note of bench.skipped) process.stdout.write(`skipped ${note}\n`);

  const pg = findPgBinaries();
  const results = {
    generatedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', kernel: release(), node: process.version },
    loadAverage: { atStart: loadAtStart, atEnd: load() },
    versions: {
      postgres: pg ? firstLine(pg.path('postgres'), ['--version']) : 'unknown',
      pgbench: firstLine('pgbench', ['--version']),
      pgbouncer: firstLine(PGBOUNCER, ['--version']),
      haproxy: firstLine(HAPROXY, ['-v']),
    },
    options: { durationSeconds: duration, rounds, scale, latencyQueriesPerTarget: latencyQueries },
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
  mkdirSync(dirname(flags.out!), { recursive: true });
  writeFileSync(flags.out!, JSON.stringify(results, null, 2) + '\n');
  say(`wrote ${flags.out}`);
}

runBench('bench', main);
