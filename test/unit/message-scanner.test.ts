// MessageScanner: message boundaries in a server stream however it is split into chunks.

import t from 'tap';
import {
  FramingError,
  MessageScanner,
  MessageType,
  errorMessageOf,
  transactionStatus,
} from '../../src/protocol/message-scanner';
import { int32, message } from '../harness/wire';


// A DataRow of ~100 KB: one column of patterned bytes (so misplaced copies show up).
const bigValue = Buffer.alloc(100 * 1024);
for (let i = 0; i < bigValue.length; i++) bigValue[i] = (i * 31 + 7) & 0xff;
const dataRowBody = Buffer.concat([Buffer.from([0, 1]), int32(bigValue.length), bigValue]);

const keyBody = Buffer.concat([int32(4242), Buffer.from([0xca, 0xfe, 0xba, 0xbe])]);
const messages: Array<{ type: string; body: Buffer }> = [
  { type: 'R', body: int32(0) }, // AuthenticationOk
  { type: 'S', body: Buffer.from('server_version\x0017.2\x00') },
  { type: 'S', body: Buffer.from('client_encoding\x00UTF8\x00') },
  { type: 'S', body: Buffer.from('application_name\x00caf\u00e9\x00', 'utf8') },
  { type: 'K', body: keyBody },
  { type: 'Z', body: Buffer.from('I') },
  { type: 'T', body: Buffer.concat([Buffer.from([0, 1]), Buffer.from('v\0'), Buffer.alloc(18)]) },
  { type: 'D', body: dataRowBody },
  { type: 'C', body: Buffer.from('SELECT 1\0') },
  { type: 'Z', body: Buffer.from('T') },
  { type: '1', body: Buffer.alloc(0) }, // ParseComplete: an empty body
  { type: 'Z', body: Buffer.from('E') },
];
const stream = Buffer.concat(messages.map((m) => message(m.type, m.body)));
const ends = new Set<number>();
{
  let offset = 0;
  for (const m of messages) {
    offset += 5 + m.body.length;
    ends.add(offset);
  }
}
const collectTypes = new Set<number>([MessageType.backendKeyData, MessageType.readyForQuery]);
const expected = messages
  .filter((m) => collectTypes.has(m.type.charCodeAt(0)))
  .map((m) => ({ type: m.type, body: m.body.toString('hex') }));

interface Collected {
  type: string;
  body: string;
}

function scan(chunks: Buffer[], collect: ReadonlySet<number> = collectTypes, limit?: number): Collected[] {
  const out: Collected[] = [];
  const scanner = new MessageScanner(collect, (type, body) => out.push({ type: String.fromCharCode(type), body: body.toString('hex') }), limit);
  for (const c of chunks) scanner.push(c);
  return out;
}

t.test('whole stream in one chunk', async (t) => {
  t.equal(expected.length, 4, 'the fixture has K and three Z');
  t.same(scan([stream]), expected);
});

t.test('split at every possible single point', async (t) => {
  let mismatches = 0;
  for (let cut = 0; cut <= stream.length; cut++) {
    const got = scan([stream.subarray(0, cut), stream.subarray(cut)]);
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      mismatches++;
      if (mismatches <= 3) t.same(got, expected, `cut at ${cut}`);
    }
  }
  t.equal(mismatches, 0, `all ${stream.length + 1} two-chunk splits give the same messages`);
});

t.test('one byte at a time', async (t) => {
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) chunks.push(stream.subarray(i, i + 1));
  t.same(scan(chunks), expected);
});

t.test('collecting every type gives every body, including the big DataRow', async (t) => {
  const all = new Set(messages.map((m) => m.type.charCodeAt(0)));
  const everything = messages.map((m) => ({ type: m.type, body: m.body.toString('hex') }));
  t.same(scan([stream], all, 200 * 1024), everything, 'whole');
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i += 7) chunks.push(stream.subarray(i, i + 7));
  t.same(scan(chunks, all, 200 * 1024), everything, '7-byte chunks');
});

t.test('collected bodies are not views of the chunks (they survive buffer reuse)', async (t) => {
  const bodies: Buffer[] = [];
  const scanner = new MessageScanner(collectTypes, (_type, body) => bodies.push(body));
  const copy = Buffer.from(stream);
  scanner.push(copy);
  copy.fill(0);
  t.same(
    bodies.map((b) => b.toString('hex')),
    expected.map((e) => e.body),
  );
});

t.test('messageEnd: where, in the chunk being pushed, the message just handed over ends', async (t) => {
  const zEnd = stream.indexOf(message('Z', 'I')) + 6;
  let wrong = 0;
  for (let cut = 0; cut < zEnd; cut++) {
    // The first ReadyForQuery completes in the second chunk: its end is counted from that chunk's start.
    const second = stream.subarray(cut);
    let seen: number | undefined;
    const scanner = new MessageScanner(collectTypes, (type) => {
      if (type === MessageType.readyForQuery && seen === undefined) seen = scanner.messageEnd;
    });
    scanner.push(stream.subarray(0, cut));
    scanner.push(second);
    if (seen !== zEnd - cut) wrong++;
  }
  t.equal(wrong, 0, `every cut before byte ${zEnd}`);
});

t.test('atBoundary() is true exactly at message ends', async (t) => {
  const scanner = new MessageScanner(collectTypes, () => undefined);
  t.equal(scanner.atBoundary(), true, 'before any byte');
  let wrong = 0;
  for (let i = 0; i < stream.length; i++) {
    scanner.push(stream.subarray(i, i + 1));
    const should = ends.has(i + 1);
    if (scanner.atBoundary() !== should) {
      wrong++;
      if (wrong <= 3) t.equal(scanner.atBoundary(), should, `after byte ${i + 1}`);
    }
  }
  t.equal(wrong, 0, 'byte by byte');
  // And with two chunks: after the first chunk, at a boundary iff the cut is a message end.
  wrong = 0;
  for (let cut = 1; cut < stream.length; cut += 97) {
    const s = new MessageScanner(collectTypes, () => undefined);
    s.push(stream.subarray(0, cut));
    if (s.atBoundary() !== ends.has(cut)) wrong++;
    s.push(stream.subarray(cut));
    if (!s.atBoundary()) wrong++;
  }
  for (const end of ends) {
    const s = new MessageScanner(collectTypes, () => undefined);
    s.push(stream.subarray(0, end));
    if (!s.atBoundary()) wrong++;
  }
  t.equal(wrong, 0, 'two chunks');
});

t.test('a length below 4 throws FramingError', async (t) => {
  for (const length of [3, 0, -1]) {
    const bad = Buffer.concat([Buffer.from('Z'), int32(length), Buffer.from('I')]);
    t.throws(() => scan([bad]), FramingError, `length ${length}, header in one chunk`);
    // Split header: the slow path must check too.
    const chunks = [bad.subarray(0, 2), bad.subarray(2)];
    t.throws(() => scan(chunks), FramingError, `length ${length}, split header`);
    // Also for a type that is not collected, and after a valid message.
    const after = Buffer.concat([message('S', 'a\0b\0'), Buffer.from('D'), int32(length)]);
    t.throws(() => scan([after]), { name: 'FramingError', message: /invalid message length/ }, `length ${length} after a valid message`);
  }
  // 4 is fine: an empty body.
  t.same(scan([Buffer.concat([Buffer.from('Z'), int32(4)])]), [{ type: 'Z', body: '' }]);
});

t.test('a collected message larger than the limit throws; uncollected ones are just skipped', async (t) => {
  const limit = 1024;
  const atLimit = message('K', Buffer.alloc(limit, 1));
  t.same(scan([atLimit], collectTypes, limit), [{ type: 'K', body: Buffer.alloc(limit, 1).toString('hex') }], 'exactly the limit is fine');
  const over = message('K', Buffer.alloc(limit + 1, 1));
  t.throws(() => scan([over], collectTypes, limit), { name: 'FramingError', message: /too long/ }, 'limit + 1 throws');
  // Only the header has arrived: refused before the body is buffered.
  t.throws(() => scan([over.subarray(0, 5)], collectTypes, limit), FramingError, 'thrown at the header');
  // The default limit is 64 KiB: the 100 KB DataRow collected with the default limit throws.
  t.throws(() => scan([stream], new Set([0x44])), FramingError, '100 KB DataRow over the default limit');
  // Not collected: a DataRow larger than the limit passes through.
  t.same(scan([stream], collectTypes, limit), expected, 'uncollected big messages skipped');
});

t.test('transactionStatus()', async (t) => {
  t.equal(transactionStatus(Buffer.from('I')), 'idle');
  t.equal(transactionStatus(Buffer.from('T')), 'in-transaction');
  t.equal(transactionStatus(Buffer.from('E')), 'failed');
});

t.test('errorMessageOf()', async (t) => {
  const body = Buffer.from('SERROR\0VERROR\0C42P01\0Mrelation "naïve" does not exist\0P15\0\0', 'utf8');
  t.same(errorMessageOf(body), { code: '42P01', message: 'relation "naïve" does not exist' });
  t.same(errorMessageOf(Buffer.from('SFATAL\0\0')), {}, 'no code, no message');
  t.same(errorMessageOf(Buffer.alloc(0)), {}, 'empty body');
  // Truncated: the message field has no terminator; what came before is still read.
  t.same(errorMessageOf(Buffer.from('C57P01\0Mterminat')), { code: '57P01' }, 'truncated');
  // Round trip through the scanner.
  const bodies: Buffer[] = [];
  new MessageScanner(new Set([MessageType.errorResponse]), (_t, b) => bodies.push(b)).push(message('E', body));
  t.equal(bodies.length, 1);
  t.same(errorMessageOf(bodies[0]!), { code: '42P01', message: 'relation "naïve" does not exist' });
});
