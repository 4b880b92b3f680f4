// `npm run bench:failover`: write availability and lost writes when the primary is SIGKILLed or SIGSTOPped, with one pgfloat and with three over etcd.
//
// Two monitor profiles with one instance; then three instances over etcd against one, and SIGKILL of
// the decider instance (`--instances-only`: those runs and their one-instance baseline alone).

import { runBench } from '../lib/cleanup';
import { FAULTS, type FaultName } from '../lib/faults';
import { integer, readFlags, text, toggle } from '../lib/flags';
import { createSay, loadAverage, resultFiles, resultsHeader, writeResults } from '../lib/run-output';
import { INSTANCE_FAULTS, INSTANCE_NAMES, instanceRun, type InstanceFault, type InstanceRun } from './instances';
import { deciderTable, instancePhaseTable, instanceSummaryTable, setupName } from './instances-report';
import { checkTable, failoverSummary, phaseTable, settings, summaryTable, type FaultRun, type Profile, type QuietCheck } from './report';
import { faultRun, quietCheck, type RunOptions } from './run';

const OPTS = readFlags({
  runs: integer(3, 1),
  'check-seconds': integer(60, 0),
  /** Only the default profile with one instance (the baseline, same bench run) and the three-instance runs. */
  'instances-only': toggle(),
  /** Sizes of the etcd cluster under the three instances; "" runs none. */
  'etcd-members': text('1,3'),
  'instance-faults': text('sigkill,sigstop,decider-kill'),
  /** A random 0..intervalMs more warm-up before each fault, so it lands at a random point of the heartbeat cycle. */
  'random-phase': toggle(),
});
const runs = OPTS.runs;
const instancesOnly = OPTS.instancesOnly;
const checkSeconds = instancesOnly ? 0 : OPTS.checkSeconds;
const FILES = resultFiles(instancesOnly ? 'failover-instances' : 'failover', OPTS);
const etcdSizes = OPTS.etcdMembers.split(',').filter(Boolean).map(Number) as (1 | 3)[];
const instanceFaults = OPTS.instanceFaults.split(',').filter(Boolean) as InstanceFault[];

const DEFAULTS: Profile = { name: 'default', intervalMs: 500, timeoutMs: 1000, failuresBeforeDown: 3 };
/** Fastest first: the first one without a false failover under load is measured as "fast". */
const FAST_CANDIDATES: Profile[] = [
  { name: 'fast', intervalMs: 200, timeoutMs: 400, failuresBeforeDown: 2 },
  { name: 'fast', intervalMs: 300, timeoutMs: 600, failuresBeforeDown: 2 },
  { name: 'fast', intervalMs: 500, timeoutMs: 1000, failuresBeforeDown: 2 },
];
const FAULT_ORDER: FaultName[] = ['sigkill', 'sigstop'];
const OPTIONS: RunOptions = { periodMs: 5, reconnectPauseMs: 50, warmupMs: 2000, randomPhase: OPTS.randomPhase, timeoutMs: 30_000, settleWrites: 200 };
/** After a killed decider's successor is agreed: long enough for a false failover (witness window, 3 s) to show. */
const DECIDER_SETTLE_MS = 5000;

const say = createSay();

async function main(): Promise<void> {
  for (const size of etcdSizes) if (size !== 1 && size !== 3) throw new Error(`--etcd-members: ${size}: 1 or 3`);
  for (const f of instanceFaults) if (!(f in INSTANCE_FAULTS)) throw new Error(`--instance-faults: ${f}: one of ${Object.keys(INSTANCE_FAULTS).join(', ')}`);
  say(`load average at start: ${loadAverage()}; ${runs} runs per (profile, fault)`);

  // False failovers first: the fast profile is only measured in settings that had none.
  const checks: QuietCheck[] = [];
  let fast: Profile | undefined;
  if (instancesOnly) {
    say(`--instances-only: the default profile only, one instance as the baseline, then three over etcd (${etcdSizes.join(', ')} members)`);
  } else if (checkSeconds <= 0) {
    fast = FAST_CANDIDATES[0];
    say(`--check-seconds 0: no false-failover check; measuring ${settings(fast)} unchecked`);
  }
  for (const candidate of checkSeconds > 0 && !instancesOnly ? FAST_CANDIDATES : []) {
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
  if (!fast && !instancesOnly) say('every fast candidate failed over without a fault: measuring the defaults only');

  const results: FaultRun[] = [];
  const instanceResults: InstanceRun[] = [];
  for (let run = 1; run <= runs; run++) {
    for (const profile of profiles) {
      // The instances-only baseline: the primary faults the instance runs have.
      for (const fault of FAULT_ORDER.filter((f) => !instancesOnly || instanceFaults.includes(f))) {
        const r = await faultRun(profile, fault, run, OPTIONS, say);
        results.push(r);
        write(profiles, checks, results, instanceResults, false);
        say(
          `run ${run}/${runs} ${profile.name.padEnd(7)} ${fault}: failover ${r.failedOver ? 'yes' : 'NO'}, first write on new primary ` +
            `${r.firstWriteOnNewPrimaryMs ?? 'never'} ms, failed writes ${r.failedWrites}, lost acknowledged ${r.lostAcknowledgedWrites}` +
            (r.blocked.length ? ` (blocked: ${r.blocked.length} reason(s))` : ''),
        );
      }
    }
    for (const members of etcdSizes) {
      for (const fault of instanceFaults) {
        const r = await instanceRun(DEFAULTS, members, fault, run, { ...OPTIONS, deciderSettleMs: DECIDER_SETTLE_MS }, say);
        instanceResults.push(r);
        write(profiles, checks, results, instanceResults, false);
        const gaps = r.writers.map((w) => `${w.viaAtFault}->${w.viaAfter} ${w.writeGapMs ?? 'never'}`).join(', ');
        say(
          `run ${run}/${runs} ${setupName(members)} ${fault}: decider ${r.decider}${r.deciderAfter !== r.decider ? ` -> ${r.deciderAfter ?? 'none'}` : ''}, ` +
            `failovers ${r.failovers}, first write on new primary ${r.firstWriteOnNewPrimaryMs ?? 'n/a'} ms, write gaps ${gaps} ms, ` +
            `failed writes ${r.failedWrites}, lost acknowledged ${r.lostAcknowledgedWrites}` +
            (r.refusingAtEnd.length ? `, REFUSING at the end: ${r.refusingAtEnd.join('; ')}` : ''),
        );
      }
    }
  }

  const tables = write(profiles, checks, results, instanceResults, true);
  if (!instancesOnly) {
    process.stdout.write(
      `\n${tables.summary}\n\nMedian ms after the fault (pgfloat log lines, writer):\n\n${tables.phases}\n\nFalse-failover check (no fault):\n\n${tables.check}\n\n`,
    );
  }
  if (instanceResults.some((r) => r.fault !== 'decider-kill')) {
    process.stdout.write(
      `\nThree pgfloat instances over etcd against one, default profile, same bench run:\n\n${tables.instances}\n\n` +
        `Median ms after the fault (pgfloat log lines of the deciding instance, writers):\n\n${tables.instancePhases}\n\n`,
    );
  }
  if (instanceResults.some((r) => r.fault === 'decider-kill')) process.stdout.write(`\nSIGKILL of the decider instance alone:\n\n${tables.decider}\n\n`);
  say(`wrote ${FILES.summary} and ${FILES.raw}`);
}

/** Writes the results (after every run too, so an interrupted run leaves what it measured). */
function write(profiles: Profile[], checks: QuietCheck[], results: FaultRun[], instanceRuns: InstanceRun[], complete: boolean): Record<string, string> {
  const summary = summaryTable(results, profiles);
  const phases = phaseTable(results);
  const check = checkTable(checks);
  const instances = instanceSummaryTable(results, instanceRuns);
  const instancePhases = instancePhaseTable(results, instanceRuns);
  const decider = deciderTable(instanceRuns);
  const doc = {
    ...resultsHeader({ ...OPTIONS, deciderSettleMs: DECIDER_SETTLE_MS, instancesOnly, etcdMembers: etcdSizes }),
    complete,
    profiles: profiles.map((p) => ({ ...p })),
    faults: FAULTS,
    instanceFaults: INSTANCE_FAULTS,
    method: {
      cluster: 'fresh LocalCluster (PostgreSQL primary + async streaming standby, wal_sender_timeout 3s) per run',
      pgfloat: 'separate `pgfloat start` process, log level info, failover/fencing defaults (requireStandbyConfirmation, standbyConfirmationMs 3000, fencing sql)',
      writer: `one connection through pgfloat's read-write port; "insert ... returning id, inet_server_port()" with a unique seq every ${OPTIONS.periodMs} ms; on error the connection is dropped and a new one tried after ${OPTIONS.reconnectPauseMs} ms; every attempt counts (a failed connect is a failed write)`,
      firstWrite: 'ms from the fault signal to the acknowledgement of the first write committed by the new primary (inet_server_port)',
      lost: 'acknowledged seqs absent from failover_writes read directly on the new primary after the writer stopped',
      run: `warm-up ${OPTIONS.warmupMs} ms${OPTIONS.randomPhase ? ' plus a random 0..monitor.intervalMs (phaseDelayMs)' : ''}, then the fault, then until ${OPTIONS.settleWrites} writes on the new primary or ${OPTIONS.timeoutMs} ms`,
      falseFailoverCheck: `fast candidates in order, ${checkSeconds} s each, writer through pgfloat plus pgbench -S -c 8 -j 2 directly on the primary; the first without a failover is the fast profile`,
      writeGap: 'the longest stretch between two acknowledged writes of one writer, from its last acknowledgement before the fault on',
      instances:
        `three \`pgfloat start\` processes (${INSTANCE_NAMES.join(', ')}, started in that order so ${INSTANCE_NAMES[0]} takes the decider election) over a fresh etcd ` +
        `(src/sandbox startEtcd: heartbeat 50 ms, election timeout 500 ms) per run, state.store etcd with the default leaseTtlSeconds (3), default monitor profile, ` +
        'each with its own fresh cluster like the single-instance runs; interleaved with them in every run',
      instanceWriters:
        'three writers like the single-instance one (same period, reconnect pause, every attempt counts), each connecting like a multi-host client: ' +
        'writer k tries instance k, then the next ones in turn (writer 1: i1, i2, i3), a refused connection or a startup error moving on to the next; ' +
        'writer 1 is the one compared with the single instance',
      deciderKill: `SIGKILL of the pgfloat process the instances name as decider; the run goes on until the survivors agree on a new decider, then ${DECIDER_SETTLE_MS} ms and ${OPTIONS.settleWrites} acknowledged writes per writer`,
    },
    markdown: { summary, phases, falseFailoverCheck: check, instances, instancePhases, decider },
    falseFailoverChecks: checks,
    runs: results,
    instanceRuns,
  };
  writeResults(FILES, doc, failoverSummary(doc));
  return { summary, phases, check, instances, instancePhases, decider };
}

runBench('bench:failover', main);
