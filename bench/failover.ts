// `npm run bench:failover`: write availability and lost writes when the primary is SIGKILLed or SIGSTOPped, two monitor profiles.

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FAULTS, type FaultName } from './failover-faults';
import { checkTable, phaseTable, settings, summaryTable, type FaultRun, type Profile, type QuietCheck } from './failover-report';
import { faultRun, quietCheck, type RunOptions } from './failover-run';
import { runBench } from './processes';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    'check-seconds': { type: 'string', default: '60' },
    out: { type: 'string', default: resolve(__dirname, '../../bench/results/failover-latest.json') },
  },
});
const runs = Number(flags.runs);
const checkSeconds = Number(flags['check-seconds']);

const DEFAULTS: Profile = { name: 'default', intervalMs: 500, timeoutMs: 1000, failuresBeforeDown: 3 };
/** Fastest first: the first one without a false failover under load is measured as "fast". */
const FAST_CANDIDATES: Profile[] = [
  { name: 'fast', intervalMs: 200, timeoutMs: 400, failuresBeforeDown: 2 },
  { name: 'fast', intervalMs: 300, timeoutMs: 600, failuresBeforeDown: 2 },
  { name: 'fast', intervalMs: 500, timeoutMs: 1000, failuresBeforeDown: 2 },
];
const FAULT_ORDER: FaultName[] = ['sigkill', 'sigstop'];
const OPTIONS: RunOptions = { periodMs: 5, reconnectPauseMs: 50, warmupMs: 2000, timeoutMs: 30_000, settleWrites: 200 };

const started = Date.now();
const say = (message: string): void => {
  process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
};

async function main(): Promise<void> {
  say(`load average at start: ${loadavg().map((v) => v.toFixed(2)).join(' ')}; ${runs} runs per (profile, fault)`);

  // False failovers first: the fast profile is only measured in settings that had none.
  const checks: QuietCheck[] = [];
  let fast: Profile | undefined;
  if (checkSeconds <= 0) {
    fast = FAST_CANDIDATES[0];
    say(`--check-seconds 0: no false-failover check; measuring ${settings(fast)} unchecked`);
  }
  for (const candidate of checkSeconds > 0 ? FAST_CANDIDATES : []) {
    say(`false-failover check, ${settings(candidate)}: writer + pgbench -S -c 8 for ${checkSeconds} s, no fault`);
    const check = await quietCheck(candidate, checkSeconds, OPTIONS, say);
    checks.push(check);
    say(`  failovers ${check.failovers}, primary suspect ${check.primarySuspect}, down ${check.primaryDown}, writes ${check.writes} (failed ${check.failedWrites})`);
    if (check.failovers === 0) {
      fast = candidate;
      break;
    }
  }
  const profiles = fast ? [DEFAULTS, fast] : [DEFAULTS];
  if (!fast) say('every fast candidate failed over without a fault: measuring the defaults only');

  const results: FaultRun[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const profile of profiles) {
      for (const fault of FAULT_ORDER) {
        const r = await faultRun(profile, fault, run, OPTIONS, say);
        results.push(r);
        write(profiles, checks, results, false);
        say(
          `run ${run}/${runs} ${profile.name.padEnd(7)} ${fault}: failover ${r.failedOver ? 'yes' : 'NO'}, first write on new primary ` +
            `${r.firstWriteOnNewPrimaryMs ?? 'never'} ms, failed writes ${r.failedWrites}, lost acknowledged ${r.lostAcknowledgedWrites}` +
            (r.blocked.length ? ` (blocked: ${r.blocked.length} reason(s))` : ''),
        );
      }
    }
  }

  const { summary, phases, check } = write(profiles, checks, results, true);
  process.stdout.write(
    `\n${summary}\n\nMedian ms after the fault (pgfloat log lines, writer):\n\n${phases}\n\nFalse-failover check (no fault):\n\n${check}\n\n`,
  );
  say(`wrote ${flags.out}`);
}

/** Writes the JSON results (after every run too, so an interrupted run leaves what it measured). */
function write(profiles: Profile[], checks: QuietCheck[], results: FaultRun[], complete: boolean): Record<string, string> {
  const summary = summaryTable(results, profiles);
  const phases = phaseTable(results);
  const check = checkTable(checks);
  const out = {
    generatedAt: new Date().toISOString(),
    complete,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', kernel: release(), node: process.version },
    loadAverageAtEnd: loadavg(),
    profiles: profiles.map((p) => ({ ...p })),
    faults: FAULTS,
    options: OPTIONS,
    method: {
      cluster: 'fresh LocalCluster (PostgreSQL primary + async streaming standby, wal_sender_timeout 3s) per run',
      pgfloat: 'separate `pgfloat start` process, log level info, failover/fencing defaults (requireStandbyConfirmation, standbyConfirmationMs 3000, fencing sql)',
      writer: `one connection through pgfloat's read-write port; "insert ... returning id, inet_server_port()" with a unique seq every ${OPTIONS.periodMs} ms; on error the connection is dropped and a new one tried after ${OPTIONS.reconnectPauseMs} ms; every attempt counts (a failed connect is a failed write)`,
      firstWrite: 'ms from the fault signal to the acknowledgement of the first write committed by the new primary (inet_server_port)',
      lost: 'acknowledged seqs absent from failover_writes read directly on the new primary after the writer stopped',
      run: `warm-up ${OPTIONS.warmupMs} ms, then the fault, then until ${OPTIONS.settleWrites} writes on the new primary or ${OPTIONS.timeoutMs} ms`,
      falseFailoverCheck: `fast candidates in order, ${checkSeconds} s each, writer through pgfloat plus pgbench -S -c 8 -j 2 directly on the primary; the first without a failover is the fast profile`,
    },
    markdown: { summary, phases, falseFailoverCheck: check },
    falseFailoverChecks: checks,
    runs: results,
  };
  mkdirSync(dirname(flags.out!), { recursive: true });
  writeFileSync(flags.out!, JSON.stringify(out, null, 2) + '\n');
  return { summary, phases, check };
}

runBench('bench:failover', main);
