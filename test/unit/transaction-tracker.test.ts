// TransactionTracker: idle-at-a-boundary over whole conversations, however both streams are split into chunks.

import t, { type Test } from 'tap';
import { TransactionTracker, type ReadyStatus } from '../../src/protocol/transaction-tracker';
import { int32, message } from '../harness/wire';


// Frontend messages.
const query = (sql: string): Buffer => message('Q', `${sql}\0`);
const parse = (sql: string): Buffer => message('P', Buffer.concat([Buffer.from(`\0${sql}\0`), Buffer.from([0, 0])]));
const bind = (): Buffer => message('B', Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]));
const describePortal = (): Buffer => message('D', 'P\0');
const execute = (): Buffer => message('E', Buffer.concat([Buffer.from('\0'), int32(0)]));
const sync = (): Buffer => message('S');
const flush = (): Buffer => message('H');
const copyData = (text: string): Buffer => message('d', text);
const copyDone = (): Buffer => message('c');
const terminate = (): Buffer => message('X');

// Backend messages.
const ready = (status: ReadyStatus): Buffer => message('Z', status);
const rowDescription = (): Buffer => message('T', Buffer.concat([Buffer.from([0, 1]), Buffer.from('v\0'), Buffer.alloc(18)]));
const dataRow = (value: Buffer): Buffer => message('D', Buffer.concat([Buffer.from([0, 1]), int32(value.length), value]));
const complete = (tag: string): Buffer => message('C', `${tag}\0`);
const errorResponse = (code: string): Buffer => message('E', `SERROR\0C${code}\0Mboom\0\0`);
const copyInResponse = (): Buffer => message('G', Buffer.from([0, 0, 0]));
const parseComplete = (): Buffer => message('1');
const bindComplete = (): Buffer => message('2');
const noData = (): Buffer => message('n');
const startupReply = Buffer.concat([
  message('R', int32(0)),
  message('S', 'server_version\x0015.0\0'),
  message('K', Buffer.concat([int32(4242), int32(99)])),
  ready('I'),
]);

const bigValue = Buffer.alloc(100 * 1024);
for (let i = 0; i < bigValue.length; i++) bigValue[i] = (i * 31 + 7) & 0xff;

type Step = ['c' | 's', Buffer];
interface State {
  idle: boolean;
  atServerBoundary: boolean;
  status: ReadyStatus;
  lost: boolean;
}

const stateOf = (tr: TransactionTracker): State => ({ idle: tr.idle(), atServerBoundary: tr.atServerBoundary(), status: tr.lastStatus(), lost: tr.isLost() });

function feed(tr: TransactionTracker, dir: 'c' | 's', bytes: Buffer, start = 0, end = bytes.length): void {
  if (dir === 'c') tr.client(bytes, start, end);
  else tr.server(bytes, start, end);
}

/** The state after each step, each step's bytes cut into pieces by `cuts(stepIndex, length)`. */
function run(steps: readonly Step[], cuts: (step: number, length: number) => number[] = () => []): State[] {
  const tr = new TransactionTracker();
  return steps.map(([dir, bytes], i) => {
    let from = 0;
    for (const cut of [...cuts(i, bytes.length), bytes.length]) {
      // Half the time as a view into a larger buffer, to exercise start/end offsets.
      if (cut % 2 === 0) {
        feed(tr, dir, bytes.subarray(from, cut));
      } else {
        const padded = Buffer.concat([Buffer.from([0xee, 0xee]), bytes, Buffer.from([0xee])]);
        feed(tr, dir, padded, from + 2, cut + 2);
      }
      from = cut;
    }
    return stateOf(tr);
  });
}

/** Offsets inside `bytes` (a run of whole messages) where a message starts. */
function boundaries(bytes: Buffer): Set<number> {
  const out = new Set<number>([0, bytes.length]);
  for (let offset = 0; offset + 5 <= bytes.length; ) {
    offset += 1 + bytes.readInt32BE(offset + 1);
    out.add(offset);
  }
  return out;
}

/** Checks a conversation's states, then that every way of splitting it gives the same states and is never idle mid-message. */
function checkConversation(t: Test, name: string, steps: readonly Step[], expected: Array<Partial<State>>): void {
  t.test(name, async (t) => {
    const whole = run(steps);
    whole.forEach((state, i) => t.match(state, expected[i]!, `step ${i + 1} (${steps[i]![0]}: ${steps[i]![1].subarray(0, 12).toString('latin1').replace(/[^ -~]/g, '.')})`));
    let splitMismatches = 0;
    let idleMidMessage = 0;
    for (let step = 0; step < steps.length; step++) {
      const [dir, bytes] = steps[step]!;
      const starts = boundaries(bytes);
      for (let cut = 1; cut < bytes.length; cut++) {
        if (JSON.stringify(run(steps, (i) => (i === step ? [cut] : []))) !== JSON.stringify(whole)) splitMismatches++;
        if (starts.has(cut)) continue;
        // Stop right after the first piece: mid-message, so neither idle nor (server side) at a boundary.
        const tr = new TransactionTracker();
        for (let i = 0; i < step; i++) feed(tr, steps[i]![0], steps[i]![1]);
        feed(tr, dir, bytes.subarray(0, cut));
        if (tr.idle() || (dir === 's' && tr.atServerBoundary())) idleMidMessage++;
      }
    }
    t.equal(splitMismatches, 0, 'every single split point gives the same states');
    t.equal(idleMidMessage, 0, 'never idle (nor at a server boundary) in the middle of a message');
    t.same(run(steps, (_, length) => Array.from({ length: length - 1 }, (_, k) => k + 1)), whole, 'byte by byte gives the same states');
    let seed = 7;
    const random = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let round = 0; round < 50; round++) {
      const chunked = run(steps, (_, length) => [...new Set(Array.from({ length: random(6) }, () => 1 + random(Math.max(1, length - 1))))].sort((a, b) => a - b).filter((c) => c < length));
      if (JSON.stringify(chunked) !== JSON.stringify(whole)) splitMismatches++;
    }
    t.equal(splitMismatches, 0, 'random multi-way splits give the same states');
  });
}

const idle = { idle: true, atServerBoundary: true, status: 'I' as const, lost: false };
const busy = { idle: false, lost: false };

checkConversation(t, 'startup, then one simple query', [
  ['s', startupReply],
  ['c', query('select 1')],
  ['s', Buffer.concat([rowDescription(), dataRow(Buffer.from('1')), complete('SELECT 1')])],
  ['s', ready('I')],
], [idle, busy, { ...busy, atServerBoundary: true }, idle]);

t.test('a fresh tracker owes the startup ReadyForQuery', async (t) => {
  const tr = new TransactionTracker();
  t.notOk(tr.idle(), 'not idle before the startup ReadyForQuery');
  t.ok(tr.atServerBoundary(), 'but at a server boundary');
  tr.client(Buffer.from(message('p', 'secret\0')), 0, 12);
  tr.server(startupReply, 0, startupReply.length);
  t.ok(tr.idle(), 'idle after it (a password message changes nothing)');
});

checkConversation(t, 'pipelined queries: Q Q, then Z Z', [
  ['s', startupReply],
  ['c', Buffer.concat([query('select 1'), query('select 2')])],
  ['s', Buffer.concat([rowDescription(), dataRow(Buffer.from('1')), complete('SELECT 1'), ready('I')])],
  ['s', Buffer.concat([rowDescription(), dataRow(Buffer.from('2')), complete('SELECT 1')])],
  ['s', ready('I')],
], [idle, busy, { ...busy, atServerBoundary: true, status: 'I' }, busy, idle]);

checkConversation(t, 'a transaction block, with a 100 KB row inside', [
  ['s', startupReply],
  ['c', query('begin')],
  ['s', Buffer.concat([complete('BEGIN'), ready('T')])],
  ['c', query('select big')],
  ['s', Buffer.concat([rowDescription(), dataRow(bigValue), complete('SELECT 1'), ready('T')])],
  ['c', query('commit')],
  ['s', Buffer.concat([complete('COMMIT'), ready('I')])],
], [idle, busy, { ...busy, status: 'T', atServerBoundary: true }, busy, { ...busy, status: 'T' }, busy, idle]);

checkConversation(t, 'extended protocol: P B D E S', [
  ['s', startupReply],
  ['c', Buffer.concat([parse('select $1'), bind(), describePortal(), execute(), sync()])],
  ['s', Buffer.concat([parseComplete(), bindComplete(), rowDescription(), dataRow(Buffer.from('x')), complete('SELECT 1')])],
  ['s', ready('I')],
], [idle, busy, busy, idle]);

checkConversation(t, 'extended protocol without Sync, then the Sync', [
  ['s', startupReply],
  ['c', Buffer.concat([parse('select 1'), bind(), execute()])],
  ['s', Buffer.concat([parseComplete(), bindComplete(), dataRow(Buffer.from('1')), complete('SELECT 1')])],
  ['c', sync()],
  ['s', ready('I')],
], [idle, busy, { ...busy, atServerBoundary: true }, busy, idle]);

checkConversation(t, 'Flush only: work pending with no ReadyForQuery coming', [
  ['s', startupReply],
  ['c', Buffer.concat([parse('select 1'), flush()])],
  ['s', parseComplete()],
  ['c', Buffer.concat([bind(), execute(), sync()])],
  ['s', Buffer.concat([bindComplete(), dataRow(Buffer.from('1')), complete('SELECT 1'), ready('I')])],
], [idle, busy, { ...busy, atServerBoundary: true }, busy, idle]);

checkConversation(t, 'COPY FROM STDIN: Q, then d d c, then Z', [
  ['s', startupReply],
  ['c', query('copy t from stdin')],
  ['s', copyInResponse()],
  ['c', Buffer.concat([copyData('1\n'), copyData('2\n')])],
  ['c', copyDone()],
  ['s', Buffer.concat([complete('COPY 2'), ready('I')])],
], [idle, busy, busy, busy, busy, idle]);

// libpq's PQexecParams("COPY ... FROM STDIN"): the Sync behind Execute is swallowed by copy mode,
// and PQputCopyEnd sends another one; the server answers only the second.
checkConversation(t, 'COPY FROM STDIN through Execute: the Sync sent during the copy is not owed', [
  ['s', startupReply],
  ['c', Buffer.concat([parse('copy t from stdin'), bind(), describePortal(), execute(), sync()])],
  ['s', Buffer.concat([parseComplete(), bindComplete(), noData(), copyInResponse()])],
  ['c', Buffer.concat([copyData('1\n'), copyDone(), sync()])],
  ['s', Buffer.concat([complete('COPY 1'), ready('I')])],
], [idle, busy, busy, busy, idle]);

t.test('a COPY through Execute that failed before reading the Sync: the count is off, so lost', async (t) => {
  const tr = new TransactionTracker();
  const steps: Step[] = [
    ['s', startupReply],
    ['c', Buffer.concat([parse('copy t from stdin'), bind(), describePortal(), execute(), sync()])],
    // Cancelled right after CopyInResponse: the error ends copy mode, and the Sync gets its ReadyForQuery.
    ['s', Buffer.concat([parseComplete(), bindComplete(), noData(), copyInResponse(), errorResponse('57014'), ready('I')])],
    ['c', Buffer.concat([copyData('1\n'), copyDone(), sync()])],
  ];
  for (const [dir, bytes] of steps) feed(tr, dir, bytes);
  t.ok(tr.isLost(), 'lost');
  feed(tr, 's', ready('I'));
  t.notOk(tr.idle(), 'and not idle even after the last ReadyForQuery');
});

checkConversation(t, "an error inside a transaction: status 'E' until ROLLBACK", [
  ['s', startupReply],
  ['c', query('begin')],
  ['s', Buffer.concat([complete('BEGIN'), ready('T')])],
  ['c', query('select 1/0')],
  ['s', Buffer.concat([errorResponse('22012'), ready('E')])],
  ['c', query('select 1')],
  ['s', Buffer.concat([errorResponse('25P02'), ready('E')])],
  ['c', query('rollback')],
  ['s', Buffer.concat([complete('ROLLBACK'), ready('I')])],
], [idle, busy, { ...busy, status: 'T' }, busy, { ...busy, status: 'E', atServerBoundary: true }, busy, { ...busy, status: 'E' }, busy, idle]);

checkConversation(t, 'async messages while idle keep it idle once complete', [
  ['s', startupReply],
  ['s', Buffer.concat([message('A', Buffer.concat([int32(1), Buffer.from('chan\0payload\0')])), message('N', 'SNOTICE\0Mhi\0\0')])],
], [idle, idle]);

checkConversation(t, 'Terminate: the client is leaving, never idle again', [
  ['s', startupReply],
  ['c', terminate()],
], [idle, { ...busy, atServerBoundary: true }]);

t.test('framing errors mark the tracker lost, never idle, without throwing', async (t) => {
  const cases: Array<[string, Step[]]> = [
    ['client length 3', [['c', Buffer.from([0x51, 0, 0, 0, 3])]]],
    ['client length split, then 0', [['c', Buffer.from([0x51, 0, 0])], ['c', Buffer.from([0, 0])]]],
    ['client negative length', [['c', Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff])]]],
    ['server length 0', [['s', Buffer.from([0x44, 0, 0, 0, 0])]]],
    ['server negative length', [['s', Buffer.from([0x44, 0x80, 0, 0, 0])]]],
    ['ReadyForQuery without a status byte', [['s', message('Z')]]],
    ['ReadyForQuery with an unknown status', [['s', message('Z', 'Q')]]],
    ['a ReadyForQuery nobody asked for', [['s', ready('I')]]],
    ['HTTP sent as a query', [['c', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]]],
  ];
  for (const [name, steps] of cases) {
    const tr = new TransactionTracker();
    tr.server(startupReply, 0, startupReply.length);
    for (const [dir, bytes] of steps) feed(tr, dir, bytes);
    // Whatever follows, including what would normally make it idle.
    tr.client(query('select 1'), 0, query('select 1').length);
    const tail = Buffer.concat([complete('SELECT 1'), ready('I')]);
    tr.server(tail, 0, tail.length);
    if (name === 'HTTP sent as a query') {
      // 'G' then length "ET / " = 1163141167: a plausible length, so this one is "mid-message", not lost.
      t.notOk(tr.idle(), `${name}: not idle`);
      continue;
    }
    t.ok(tr.isLost(), `${name}: lost`);
    t.notOk(tr.idle(), `${name}: not idle`);
    t.notOk(tr.atServerBoundary(), `${name}: no server boundary to inject at`);
  }
});

t.test('a large chunk of many small messages leaves it at a boundary, chunk after chunk', async (t) => {
  // How fast it walks them is measured by `npm run bench:tracker`, not here.
  const one = Buffer.concat([dataRow(Buffer.from('abcdefgh')), dataRow(Buffer.from('ijklmnop'))]);
  const chunk = Buffer.concat(Array.from({ length: 64 * 1024 / one.length }, () => one));
  const tr = new TransactionTracker();
  tr.server(startupReply, 0, startupReply.length);
  tr.client(query('select'), 0, query('select').length);
  for (let i = 0; i < 20; i++) {
    tr.server(chunk, 0, chunk.length);
    if (!tr.atServerBoundary()) break;
  }
  t.ok(tr.atServerBoundary(), 'at a boundary after whole messages');
  t.notOk(tr.isLost(), 'still following the stream');
});
