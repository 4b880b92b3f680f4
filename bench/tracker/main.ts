// Micro-benchmark of the relay's hot path: TransactionTracker walking pgbench-like chunks in both directions, in ns per message.

import { execFileSync } from 'node:child_process';
import { hostname, uptime } from 'node:os';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import type { TransactionTracker } from '../../src/protocol/transaction-tracker';
import { ClientToServerPump, ServerToClientPump, type RelayCounters } from '../../src/proxy/relay';

/**
 * `npm run build && node dist/bench/tracker/main.js`: runs every scenario in `--processes` fresh
 * processes (so one scenario's type feedback cannot slow another's) and prints the median of
 * their medians. Chunks go through the relay's own pumps (`--via relay`, into sockets that take
 * everything at once) or straight to the tracker (`--via direct`). `--tracker FILE` measures
 * another build of transaction-tracker.js, say one compiled from an older commit, so before and
 * after come from the same harness.
 *
 * Wall time on a shared machine is noisy; `--fixed N` is for instruction counts instead: it
 * walks N rounds one at a time to warm up, then N at once between two calls that mark them:
 *   valgrind --tool=callgrind --smc-check=all-non-file --separate-threads=yes \
 *     --zero-before=uv_os_gethostname --dump-before=uv_uptime \
 *     node --single-threaded dist/bench/tracker/main.js --scenario simple --fixed 100
 * The main thread's dump (callgrind.out.PID.1-01) then holds the measured rounds alone;
 * --single-threaded compiles on the main thread, so every run tiers up alike.
 */
const { values: flags } = parseArgs({
  options: {
    tracker: { type: 'string', default: '../../src/protocol/transaction-tracker' },
    scenario: { type: 'string' },
    processes: { type: 'string', default: '5' },
    samples: { type: 'string', default: '15' },
    fixed: { type: 'string' },
    via: { type: 'string', default: 'relay' },
  },
});

interface Tracker {
  client(chunk: Uint8Array, start: number, end: number): void;
  server(chunk: Uint8Array, start: number, end: number): void;
  idle(): boolean;
}
const { TransactionTracker: TrackerClass } = require(flags.tracker!) as { TransactionTracker: new () => Tracker };

function message(type: string, ...parts: Array<Buffer | string>): Buffer {
  const body = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
  const out = Buffer.alloc(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
const int16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
};
const count = (bytes: Buffer): number => {
  let n = 0;
  for (let i = 0; i < bytes.length; i += 1 + bytes.readInt32BE(i + 1)) n++;
  return n;
};

// pgbench -S: one account's balance per transaction.
const SELECT = 'SELECT abalance FROM pgbench_accounts WHERE aid = ';
const aid = (k: number): string => String(1 + ((k * 7919) % 100000));
const field = (name: string, typeOid: number, size: number): Buffer =>
  Buffer.concat([Buffer.from(`${name}\0`), int32(16398), int16(3), int32(typeOid), int16(size), int32(-1), int16(0)]);
const rowDescription = message('T', int16(1), field('abalance', 23, 4));
const dataRow = (value: string): Buffer => message('D', int16(1), int32(Buffer.byteLength(value)), value);
const tail = Buffer.concat([message('C', 'SELECT 1\0'), message('Z', 'I')]);

const simpleQuery = (k: number): Buffer => message('Q', `${SELECT}${aid(k)};\0`);
const bindOne = (k: number): Buffer => message('B', '\0\0', int16(0), int16(1), int32(aid(k).length), aid(k), int16(0));
const extended = (k: number): Buffer =>
  Buffer.concat([message('P', `\0${SELECT}$1;\0`, int16(0)), bindOne(k), message('D', 'P\0'), message('E', '\0', int32(0)), message('S')]);
const prepared = (k: number): Buffer => Buffer.concat([bindOne(k), message('D', 'P\0'), message('E', '\0', int32(0)), message('S')]);
const simpleReply = (k: number): Buffer => Buffer.concat([rowDescription, dataRow(String(k % 5000)), tail]);
const extendedReply = (k: number): Buffer => Buffer.concat([message('1'), message('2'), simpleReply(k)]);
const preparedReply = (k: number): Buffer => Buffer.concat([message('2'), simpleReply(k)]);

/** One chunk as the relay hands it over: a view [start, end) of a buffer, and which way it goes. */
interface Step {
  server: boolean;
  bytes: Buffer;
  start: number;
  end: number;
}
interface Scenario {
  steps: Step[];
  messages: number;
}

const TRANSACTIONS = 1000;
const whole = (server: boolean, bytes: Buffer): Step => ({ server, bytes, start: 0, end: bytes.length });

function perTransaction(request: (k: number) => Buffer, reply: (k: number) => Buffer): Scenario {
  const steps: Step[] = [];
  let messages = 0;
  for (let k = 0; k < TRANSACTIONS; k++) {
    steps.push(whole(false, request(k)), whole(true, reply(k)));
    messages += count(request(k)) + count(reply(k));
  }
  return { steps, messages };
}

/** Extended-protocol replies cut in three at points that move through every offset, so every header split occurs. */
function split(): Scenario {
  const steps: Step[] = [];
  let messages = 0;
  for (let k = 0; k < TRANSACTIONS; k++) {
    const request = extended(k);
    const reply = extendedReply(k);
    const a = 1 + (k % (reply.length - 2));
    const b = a + 1 + ((k * 13) % (reply.length - a - 1));
    steps.push(whole(false, request), { server: true, bytes: reply, start: 0, end: a }, { server: true, bytes: reply, start: a, end: b }, { server: true, bytes: reply, start: b, end: reply.length });
    messages += count(request) + count(reply);
  }
  return { steps, messages };
}

/** `SELECT * FROM pgbench_accounts LIMIT 2000`: 64 KiB reads of ~110-byte DataRows, split wherever a read ends. */
function bulk(): Scenario {
  const steps: Step[] = [];
  let messages = 0;
  const rows: Buffer[] = [];
  for (let r = 0; r < 2000; r++) {
    const values = [String(r + 1), '1', '0', ' '.repeat(84)];
    rows.push(message('D', int16(4), ...values.flatMap((v) => [int32(v.length), v])));
  }
  const reply = Buffer.concat([rowDescription, ...rows, message('C', 'SELECT 2000\0'), message('Z', 'I')]);
  const request = message('Q', 'SELECT * FROM pgbench_accounts LIMIT 2000;\0');
  for (let k = 0; k < 20; k++) {
    steps.push(whole(false, request));
    // A different phase each time, so the 64 KiB boundaries land on headers too.
    for (let from = 0, first = 65536 - k * 37; from < reply.length; from = Math.min(reply.length, from + (from === 0 ? first : 65536))) {
      steps.push({ server: true, bytes: reply, start: from, end: Math.min(reply.length, from + (from === 0 ? first : 65536)) });
    }
    messages += count(request) + count(reply);
  }
  return { steps, messages };
}

const SCENARIOS: Record<string, () => Scenario> = {
  simple: () => perTransaction(simpleQuery, simpleReply),
  extended: () => perTransaction(extended, extendedReply),
  prepared: () => perTransaction(prepared, preparedReply),
  split,
  bulk,
};

const startupReply = Buffer.concat([message('R', int32(0)), message('K', int32(1), int32(2)), message('Z', 'I')]);

// In the relay, libuv and the stream machinery call the pumps' handlers: each is optimized on its
// own, never inlined into a caller. The loops below must not inline them either, or the inlining
// budget they spend decides what gets inlined into the tracker, and the figures measure that.
setFlagsFromString('--allow-natives-syntax');
const neverOptimize = new Function('f', '%NeverOptimizeFunction(f)') as (f: unknown) => void;

/** The chunk handlers of one session's two pumps, writing into sockets that take everything at once. */
interface Relay {
  fromClient: (chunk: Buffer) => void;
  fromServer: (nread: number, buffer: Buffer) => boolean;
}

function relayFor(tracker: Tracker): Relay {
  let fromClient: ((chunk: Buffer) => void) | undefined;
  const socket = {
    writableLength: 0,
    write: (_chunk: Buffer): boolean => true,
    on: (_event: string, listener: (chunk: Buffer) => void): void => void (fromClient = listener),
    once: (): void => undefined,
    pause: (): void => undefined,
    resume: (): void => undefined,
  };
  const counters: RelayCounters = { clientToServerBytes: 0, serverToClientBytes: 0 };
  const tracked = tracker as unknown as TransactionTracker;
  new ClientToServerPump(socket as unknown as Duplex, socket as unknown as Duplex, tracked, counters, undefined).start();
  const pump = new ServerToClientPump(counters);
  pump.start(socket as unknown as Socket, socket as unknown as Duplex, tracked);
  return { fromClient: fromClient!, fromServer: pump.onread.callback };
}

/** Walks the scenario `rounds` times through one session's pumps, each chunk in a buffer of its own as a socket read gives it. */
function relayWalk(relay: Relay, chunks: readonly Buffer[], server: readonly boolean[], rounds: number): void {
  for (let r = 0; r < rounds; r++) {
    for (let s = 0; s < chunks.length; s++) {
      const chunk = chunks[s]!;
      if (server[s]) relay.fromServer(chunk.length, chunk);
      else relay.fromClient(chunk);
    }
  }
}

/** Walks the scenario `rounds` times calling the tracker directly, as if each chunk came from elsewhere. */
function directWalk(tracker: Tracker, steps: readonly Step[], rounds: number): void {
  for (let r = 0; r < rounds; r++) {
    for (let s = 0; s < steps.length; s++) {
      const step = steps[s]!;
      if (step.server) tracker.server(step.bytes, step.start, step.end);
      else tracker.client(step.bytes, step.start, step.end);
    }
  }
}

function checkIdle(tracker: Tracker): void {
  if (!tracker.idle()) throw new Error('the tracker is not idle after whole transactions: the fixture or the tracker is wrong');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** In this process: warm up, then `samples` timed walks of about 50 ms each; prints the median ns/message. */
function measure(name: string): void {
  const { steps, messages } = SCENARIOS[name]!();
  const tracker = new TrackerClass();
  tracker.server(startupReply, 0, startupReply.length);
  let walk: (rounds: number) => void;
  if (flags.via === 'relay') {
    const relay = relayFor(tracker);
    const chunks = steps.map((step) => Buffer.from(step.bytes.subarray(step.start, step.end)));
    const server = steps.map((step) => step.server);
    neverOptimize(relayWalk);
    walk = (rounds) => relayWalk(relay, chunks, server, rounds);
  } else {
    neverOptimize(directWalk);
    walk = (rounds) => directWalk(tracker, steps, rounds);
  }
  if (flags.fixed !== undefined) {
    // Warm up first; os.hostname() and os.uptime() then bracket the measured walk, for
    // callgrind's --zero-before=uv_os_gethostname --dump-before=uv_uptime.
    const rounds = Number(flags.fixed);
    for (let r = 0; r < rounds; r++) walk(1);
    hostname();
    walk(rounds);
    uptime();
    checkIdle(tracker);
    process.stdout.write(`${messages} messages a round\n`);
    return;
  }
  const time = (rounds: number): number => {
    const started = process.hrtime.bigint();
    walk(rounds);
    return Number(process.hrtime.bigint() - started);
  };
  let rounds = 1;
  while (time(rounds) < 50e6) rounds *= 2;
  for (let i = 0; i < 5; i++) time(rounds); // past tier-up and GC settling
  checkIdle(tracker);
  const samples = Array.from({ length: Number(flags.samples) }, () => time(rounds) / (rounds * messages));
  process.stdout.write(`${median(samples).toFixed(2)}\n`);
}

if (flags.scenario !== undefined) {
  measure(flags.scenario);
} else {
  const processes = Number(flags.processes);
  process.stdout.write(`tracker ${flags.tracker} via ${flags.via}: ns per message, median of ${processes} processes (each the median of ${flags.samples} samples)\n`);
  for (const name of Object.keys(SCENARIOS)) {
    const runs: number[] = [];
    for (let p = 0; p < processes; p++) {
      const args = [__filename, '--scenario', name, '--tracker', flags.tracker!, '--samples', flags.samples!, '--via', flags.via!];
      const out = execFileSync(process.execPath, args, { encoding: 'utf8' });
      runs.push(Number(out.trim()));
    }
    const { messages, steps } = SCENARIOS[name]!();
    process.stdout.write(`${name.padEnd(9)} ${median(runs).toFixed(2).padStart(7)} ns/msg   runs ${runs.map((r) => r.toFixed(2)).join(' ')}   (${messages} msgs in ${steps.length} chunks)\n`);
  }
}
