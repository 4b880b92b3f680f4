// `npm run bench:switchover`: what planned switchovers (n1→n2→n1...) with managed nodes cost pooled writers under load.

import { switchoverToStandby, waitForStatus } from '../lib/admin-api';
import { runBench } from '../lib/cleanup';
import { integer, readFlags, text } from '../lib/flags';
import { MANAGED_CLUSTER_METHOD, setUpPgfloat, type PgfloatEnv } from '../lib/pgfloat-env';
import { readPgfloatLog } from '../lib/pgfloat-log';
import { OUTCOMES_METHOD } from '../lib/pooled-load';
import { createSay, keepPgfloatLog, loadAverage, resultFiles, resultsHeader, writeResults } from '../lib/run-output';
import { Load, readHistory, SCHEMA } from './load';
import { analyse, phaseTable, QUOTED, README_HEADER, readmeRow, summaryTable, switchoverSummary, type Attempt, type SwitchoverRecord } from './report';

const OPTS = readFlags({
  switchovers: integer(6, 1),
  writers: integer(8, 1),
  'drain-ms': integer(5000, 0),
  'between-ms': integer(5000, 0),
  'warmup-ms': integer(3000, 0),
  readers: integer(0, 0),
  'probe-ms': integer(50, 0),
  'log-level': text('info'),
});
const FILES = resultFiles('switchover', OPTS);
/** A switchover refused (the rejoined standby not yet streaming, say) is asked again this often, this long. */
const RETRY = { pauseMs: 1000, attempts: 10 };

const say = createSay();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  say(`load average at start: ${loadAverage()}; ${JSON.stringify(OPTS)}`);
  const env = await setUpPgfloat(
    { name: 'switchover', serverConf: {}, schema: SCHEMA, managed: true, extraConfig: [`switchover: { drainMs: ${OPTS.drainMs} }`], openFilesNeeded: 1024, logLevel: OPTS.logLevel, heapProbe: false },
    say,
  );
  const nodes = env.cluster.nodes;
  say(`cluster ${nodes.map((n) => `${n.name}:${n.port}`).join(' ')}, pgfloat rw :${env.readWritePort} ro :${env.readOnlyPort}, ${env.adminUrl}; dir ${env.dir}`);

  const load = new Load({ port: env.readWritePort, writers: OPTS.writers, readOnlyPort: env.readOnlyPort, readers: OPTS.readers, probeMs: OPTS.probeMs });
  await load.acked(100, 30_000);
  const loadStart = Date.now();
  await sleep(OPTS.warmupMs);
  const steadyTps = (load.log.acks.filter((a) => a.at >= loadStart).length * 1000) / (Date.now() - loadStart);
  say(`warm-up: ${Math.round(steadyTps)} transactions/s acknowledged with ${OPTS.writers} writers`);

  const attempts: Attempt[] = [];
  for (let i = 1; i <= OPTS.switchovers; i++) {
    const attempt = await switchover(env, load, i);
    if (attempts.length > 0) attempts[attempts.length - 1]!.windowEnd = attempt.requestedAt;
    attempts.push(attempt);
    const op = attempt.operation;
    say(
      `switchover ${i}/${OPTS.switchovers} ${attempt.from}→${attempt.to}: ${op.state} in ${Date.parse(op.finishedAt ?? '') - attempt.requestedAt} ms: ${op.result}` +
        (attempt.refusals.length ? ` (after ${attempt.refusals.length} refusal(s): ${attempt.refusals[0]})` : ''),
    );
    if (op.state !== 'succeeded') break;
    await sleep(OPTS.betweenMs);
    attempt.verification = await verify(env, load, attempt.to);
    say(`  on ${attempt.to}: ${attempt.verification.acknowledgedSoFar} acknowledged so far, ${attempt.verification.missing} missing, balances ${attempt.verification.balanced ? 'match' : 'DO NOT MATCH'} history`);
  }
  await load.stop();
  const last = attempts[attempts.length - 1]!;
  last.windowEnd = Date.now();
  // After a failed or rolled-back switchover the primary is whichever pgfloat routes to, not the target.
  const current = (await waitForStatus(env, (st) => st.primary !== null, 30_000, 'a primary')).primary!;
  last.verification = await verify(env, load, current);

  // Failed and unknown transactions are judged against the last primary, which has every commit of every earlier one.
  const primary = nodes.find((n) => n.name === current)!;
  const standby = nodes.find((n) => n.name !== current)!;
  const final = await readHistory(primary.connectionString());
  const standbyHasAll = await eventuallyHasAll(standby.connectionString(), load.log.acks, 30_000);
  const log = readPgfloatLog(env.logFile);
  const records = attempts.map((a) => analyse(a, load.log, OPTS.readers > 0 ? load.reads : undefined, OPTS.probeMs > 0 ? load.probes : undefined, log, final));
  const baseline = baselineGap(load, loadStart, attempts[0]!.requestedAt);

  const out = write(env, records, { steadyTps, baseline, standbyHasAll, finalRows: final.rows, totalAcked: load.log.acks.length });
  process.stdout.write(
    `\n${OPTS.writers} writers (pgbench-like BEGIN; UPDATE; INSERT; COMMIT, ${Math.round(steadyTps)} TPS steady), ${records.length} switchovers, drainMs ${OPTS.drainMs}:\n\n` +
      `${out.summary}\n\nWhere the time goes:\n\n${out.phases}\n\n${QUOTED}\n\n` +
      `Steady load before the first switchover: longest gap between acknowledgements ${baseline.longestGapMs} ms, failed ${baseline.failed}, failed connects ${baseline.connectFailures}.\n` +
      `Every acknowledged write (${load.log.acks.length}) on the rejoined standby ${standby.name}: ${standbyHasAll ? 'yes' : 'NO'}.\n\n` +
      `README row:\n${README_HEADER}\n${out.readme}\n\n`,
  );
  for (const r of records) {
    const odd = r.unexpectedLog.filter((l) => !/admin operation requested/.test(l.msg));
    if (odd.length) say(`switchover ${r.index}: pgfloat logged ${odd.length} warning/error line(s): ${odd.slice(0, 5).map((l) => `${l.ms} ms ${l.component}: ${l.msg}`).join(' | ')}`);
  }
  say(`wrote ${FILES.summary} and ${FILES.raw}; pgfloat's log copied to ${keepPgfloatLog(FILES, env.logFile)}`);
}

/** A switchover to the current standby, followed to its end; its verification comes after the steady period that follows. */
async function switchover(env: PgfloatEnv, load: Load, index: number): Promise<Attempt> {
  const run = await switchoverToStandby(env, env.cluster.nodes, RETRY);
  const placeholder = { at: 0, acknowledgedSoFar: load.log.acks.length, missing: -1, balanced: false };
  return { index, ...run, windowEnd: Date.now(), verification: placeholder };
}

/** Every transaction acknowledged so far must be on the new primary, read directly there. */
async function verify(env: PgfloatEnv, load: Load, primaryName: string): Promise<Attempt['verification']> {
  const node = env.cluster.nodes.find((n) => n.name === primaryName)!;
  const at = Date.now();
  const acked = load.log.acks.filter((a) => a.at <= at);
  const history = await readHistory(node.connectionString());
  return { at, acknowledgedSoFar: acked.length, missing: acked.filter((a) => !history.keys.has(`${a.client}/${a.seq}`)).length, balanced: history.balanced };
}

async function eventuallyHasAll(connectionString: string, acks: { client: number; seq: number }[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { keys } = await readHistory(connectionString);
    if (acks.every((a) => keys.has(`${a.client}/${a.seq}`))) return true;
    if (Date.now() > deadline) return false;
    await sleep(500);
  }
}

function baselineGap(load: Load, from: number, to: number): { longestGapMs: number; failed: number; connectFailures: number } {
  const acks = load.log.acks.filter((a) => a.at >= from && a.at < to);
  let longest = 0;
  for (let i = 1; i < acks.length; i++) longest = Math.max(longest, acks[i]!.at - acks[i - 1]!.at);
  const inside = (x: { at: number }): boolean => x.at >= from && x.at < to;
  return { longestGapMs: longest, failed: load.log.failed.filter(inside).length + load.log.unknown.filter(inside).length, connectFailures: load.log.connectFailures.filter(inside).length };
}

interface Extra {
  steadyTps: number;
  baseline: { longestGapMs: number; failed: number; connectFailures: number };
  standbyHasAll: boolean;
  finalRows: number;
  totalAcked: number;
}

function write(env: PgfloatEnv, records: SwitchoverRecord[], extra: Extra): { summary: string; phases: string; readme: string } {
  const summary = summaryTable(records);
  const phases = phaseTable(records);
  const readme = readmeRow(OPTS.writers, extra.steadyTps, records);
  const doc = {
    ...resultsHeader(OPTS),
    method: {
      cluster: MANAGED_CLUSTER_METHOD,
      pgfloat: `separate \`pgfloat start\` process, log level ${OPTS.logLevel}, defaults except switchover.drainMs ${OPTS.drainMs}; pgfloat.yaml below`,
      load: `${OPTS.writers} writers through the read-write port, one pg Pool (max ${OPTS.writers}, reconnecting); each loops: check out, BEGIN; UPDATE bench_accounts (100,000 rows) SET abalance += delta; INSERT bench_history (client, seq, aid, delta) RETURNING inet_server_port(); COMMIT; release. Each statement is its own round trip.`,
      outcomes: `${OUTCOMES_METHOD}; failed new connections: pool.connect() rejected`,
      window: 'each switchover owns [its POST /switchover, the next one) for counts; the write gap is the longest interval between consecutive acknowledgements (any writer) that overlaps [request, operation finished]',
      lost: 'after the steady period following each switchover, every transaction acknowledged so far is looked up in bench_history directly on the new primary; failed and unknown ones are looked up on the last primary at the end',
      run: `warm-up ${OPTS.warmupMs} ms, then ${OPTS.switchovers} switchovers alternating direction, ${OPTS.betweenMs} ms of steady load after each operation ends`,
      probes: OPTS.probeMs > 0 ? `one new unpooled connection + select 1 through the read-write port every ${OPTS.probeMs} ms (not counted with the writers)` : 'none',
      readers: OPTS.readers > 0 ? `${OPTS.readers} readers through the read-only port: SELECT abalance by random aid, pooled like the writers` : 'none',
      config: env.configText,
    },
    quotedForContext: {
      source: 'the issue; quoted, not measured here',
      patronictlDefaults: { writeGapSeconds: 6.4, failedWrites: 126 },
      patronictlAggressive: { writeGapSeconds: 2.5, failedWrites: 50 },
    },
    steady: { tps: extra.steadyTps, ...extra.baseline },
    totals: { acknowledged: extra.totalAcked, rowsOnFinalPrimary: extra.finalRows, rejoinedStandbyHasEveryAcknowledgedWrite: extra.standbyHasAll },
    markdown: { summary, phases, quoted: QUOTED, readmeHeader: README_HEADER, readmeRow: readme },
    switchovers: records,
  };
  writeResults(FILES, doc, switchoverSummary(doc));
  return { summary, phases, readme };
}

runBench('bench:switchover', main);
