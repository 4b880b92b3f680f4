// MessageFramer: each message's type and body boundaries, however the stream is split into chunks.

import t from 'tap';
import fc from 'fast-check';
import { FRAME_END, FRAME_INVALID, MessageFramer, messageTypes, type MessageTypes } from '../../src/protocol/message-framer';
import { bytes, chunked, cutPoints, FUZZ_SEED, oneByteAtATime } from '../harness/client-bytes';
import { int32, message } from '../harness/wire';

/** What a walk reports: each message's type and body (put together from its pieces), the boundary after each chunk, and how it ended. */
interface Walked {
  messages: string[];
  atBoundary: boolean[];
  end: string;
}

const ALL = messageTypes(Array.from({ length: 256 }, (_, k) => k));

/**
 * Feeds `chunks` and rebuilds each body from what the framer says is in each chunk, so a wrong
 * body boundary shows up as a wrong body. Odd pieces are given as a window of a padded copy, to
 * exercise offsets that are not the buffer's own.
 */
function walk(chunks: readonly Buffer[], stopAt: MessageTypes = ALL): Walked {
  const framer = new MessageFramer();
  const types: number[] = [];
  const bodies: Buffer[][] = [];
  const lengths: number[] = [];
  const atBoundary: boolean[] = [];
  /** Body bytes of the last message stopped at that later chunks still hold. */
  let pending = 0;
  for (const [n, piece] of chunks.entries()) {
    const buffer = n % 2 === 0 ? piece : Buffer.concat([Buffer.from([0xee, 0xee, 0xee]), piece, Buffer.from([0xee])]);
    const start = n % 2 === 0 ? 0 : 3;
    const end = start + piece.length;
    framer.offset = start;
    if (pending > 0) {
      if (framer.bodyLeft !== pending) throw new Error(`bodyLeft ${framer.bodyLeft} at a chunk's start, ${pending} body bytes expected`);
      const to = framer.bodyEnd(end);
      bodies[bodies.length - 1]!.push(buffer.subarray(start, to));
      pending -= to - start;
    }
    for (;;) {
      const type = framer.next(buffer, end, stopAt);
      if (type === FRAME_END) break;
      if (type === FRAME_INVALID) return { messages: describe(types, lengths, bodies), atBoundary, end: `invalid ${framer.invalidLength} '${String.fromCharCode(framer.invalidType)}'` };
      const i = framer.offset;
      if (type < 0 || type > 255 || i < start || i > end) throw new Error(`type ${type} at ${i}, outside the chunk [${start}, ${end})`);
      types.push(type);
      lengths.push(framer.bodyLeft);
      const to = framer.bodyEnd(end);
      bodies.push([buffer.subarray(i, to)]);
      pending = framer.bodyLeft - (to - i);
    }
    atBoundary.push(framer.atBoundary());
  }
  return { messages: describe(types, lengths, bodies), atBoundary, end: framer.atBoundary() ? 'boundary' : 'mid-message' };
}

function describe(types: number[], lengths: number[], bodies: Buffer[][]): string[] {
  return types.map((ty, k) => `${String.fromCharCode(ty)}/${lengths[k]}:${Buffer.concat(bodies[k]!).toString('hex')}`);
}

/** The obvious walk over a whole stream, for comparison: the messages of the types in `stops`, every message end, and how it ends. */
function reference(stream: Buffer, stops?: ReadonlySet<number>): { messages: string[]; ends: Set<number>; end: string } {
  const messages: string[] = [];
  const ends = new Set<number>([0]);
  let offset = 0;
  while (offset + 5 <= stream.length) {
    const length = stream.readInt32BE(offset + 1);
    if (length < 4) return { messages, ends, end: `invalid ${length} '${String.fromCharCode(stream[offset]!)}'` };
    const bodyEnd = offset + 1 + length;
    if (stops === undefined || stops.has(stream[offset]!)) {
      messages.push(`${String.fromCharCode(stream[offset]!)}/${length - 4}:${stream.toString('hex', offset + 5, Math.min(bodyEnd, stream.length))}`);
    }
    if (bodyEnd > stream.length) return { messages, ends, end: 'mid-message' };
    offset = bodyEnd;
    ends.add(offset);
  }
  return { messages, ends, end: offset === stream.length ? 'boundary' : 'mid-message' };
}

/** Patterned bytes, so a body boundary off by one shows up. */
function patterned(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + 7) & 0xff;
  return out;
}

// Bodies of 0, 1, 4 and 5 bytes (the header's own size), a frontend pipeline, and one body whose length takes two bytes.
const pipeline = [
  message('1'),
  message('Z', 'I'),
  message('R', int32(0)),
  message('K', Buffer.from([1, 2, 3, 4, 5])),
  message('P', '\0select $1\0\0\0'),
  message('B', Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0x37, 0, 0])),
  message('E', Buffer.concat([Buffer.from([0]), int32(0)])),
  message('S'),
];
const result = (value: Buffer): Buffer[] => [message('D', Buffer.concat([Buffer.from([0, 1]), int32(value.length), value])), message('C', 'SELECT 1\0'), message('Z', 'T')];
const fixture = Buffer.concat([...pipeline, ...result(patterned(1000))]);
/** Small enough to split at every pair of points. */
const small = Buffer.concat(pipeline);
const expected = reference(fixture);
const expectedSmall = reference(small);

t.test('the fixture is what it claims', async (t) => {
  t.equal(expected.messages.length, 11);
  t.equal(expectedSmall.messages.length, 8);
  t.equal(expected.end, 'boundary');
  t.equal(expectedSmall.end, 'boundary');
});

t.test('whole stream in one chunk', async (t) => {
  t.same(walk([fixture]), { messages: expected.messages, atBoundary: [true], end: 'boundary' });
});

t.test('split at every single point: same messages, same bodies, a boundary exactly at message ends', async (t) => {
  let wrong = 0;
  for (let cut = 0; cut <= fixture.length; cut++) {
    const got = walk([fixture.subarray(0, cut), fixture.subarray(cut)]);
    const want = { messages: expected.messages, atBoundary: [expected.ends.has(cut), true], end: 'boundary' };
    if (JSON.stringify(got) !== JSON.stringify(want) && ++wrong <= 3) t.same(got, want, `cut at ${cut}`);
  }
  t.equal(wrong, 0, `all ${fixture.length + 1} two-chunk splits`);
});

t.test('split at every pair of points (headers split twice, bodies in three pieces)', async (t) => {
  let wrong = 0;
  let cases = 0;
  for (let a = 0; a <= small.length; a++) {
    for (let b = a; b <= small.length; b++) {
      cases++;
      const got = walk([small.subarray(0, a), small.subarray(a, b), small.subarray(b)]);
      const want = { messages: expectedSmall.messages, atBoundary: [expectedSmall.ends.has(a), expectedSmall.ends.has(b), true], end: 'boundary' };
      if (JSON.stringify(got) !== JSON.stringify(want) && ++wrong <= 3) t.same(got, want, `cuts at ${a} and ${b}`);
    }
  }
  t.equal(wrong, 0, `all ${cases} three-chunk splits`);
});

t.test('a body over 64 KiB, split around every header and inside the body', async (t) => {
  const stream = Buffer.concat([...pipeline, ...result(patterned(70 * 1024)), ...pipeline]);
  const want = reference(stream);
  const cuts = new Set<number>();
  for (const end of want.ends) for (let d = -7; d <= 7; d++) if (end + d > 0 && end + d < stream.length) cuts.add(end + d);
  for (let cut = 1; cut < stream.length; cut += 4093) cuts.add(cut);
  let wrong = 0;
  for (const cut of cuts) {
    const got = walk([stream.subarray(0, cut), stream.subarray(cut)]);
    if ((JSON.stringify(got.messages) !== JSON.stringify(want.messages) || got.atBoundary[0] !== want.ends.has(cut)) && ++wrong <= 3) t.fail(`cut at ${cut}`);
  }
  t.equal(wrong, 0, `${cuts.size} two-chunk splits`);
  t.same(walk(chunked(stream, [0.1, 0.3, 0.35, 0.9])).messages, want.messages, 'in five pieces');
});

t.test('one byte at a time', async (t) => {
  const got = walk(oneByteAtATime(fixture));
  t.same(got.messages, expected.messages);
  t.same(got.atBoundary, Array.from({ length: fixture.length }, (_, i) => expected.ends.has(i + 1)), 'a boundary after exactly the last byte of each message');
});

t.test('an empty range changes nothing', async (t) => {
  const framer = new MessageFramer();
  t.equal(framer.next(fixture, 0, ALL), FRAME_END, 'at a boundary');
  t.ok(framer.atBoundary());
  t.equal(framer.next(fixture, 3, ALL), FRAME_END, 'three header bytes');
  framer.offset = 3;
  t.equal(framer.next(fixture, 3, ALL), FRAME_END, 'then nothing');
  t.notOk(framer.atBoundary(), 'still inside the header');
  t.equal(framer.next(fixture, fixture.length, ALL), 0x31, 'the rest of the header: a ParseComplete');
  t.equal(framer.offset, 5, 'whose (empty) body starts at 5');
  t.equal(framer.bodyLeft, 0);
});

t.test('bodyEnd() stops at the body or at the chunk, whichever comes first', async (t) => {
  const framer = new MessageFramer();
  const m = message('D', Buffer.alloc(10, 1));
  t.equal(framer.next(m, 8, ALL), 0x44);
  t.equal(framer.offset, 5);
  t.equal(framer.bodyEnd(8), 8, 'chunk ends inside the body');
  t.equal(framer.next(m, 8, ALL), FRAME_END);
  t.equal(framer.bodyLeft, 7);
  framer.offset = 8;
  t.equal(framer.bodyEnd(m.length), m.length, 'the rest of the body ends the chunk');
  const two = Buffer.concat([m, m]);
  const fresh = new MessageFramer();
  t.equal(fresh.next(two, two.length, ALL), 0x44);
  t.equal(fresh.bodyEnd(two.length), 15, 'body ends before the chunk does');
});

t.test('impossible lengths give FRAME_INVALID, with the length as sent, however the header is split', async (t) => {
  for (const length of [3, 0, -1, -0x80000000, 0x80000000 | 5]) {
    const bad = Buffer.concat([message('S', 'a\0b\0'), Buffer.from('D'), int32(length), Buffer.from('xyz')]);
    const want = `invalid ${length | 0} 'D'`;
    for (let cut = 0; cut <= bad.length; cut++) {
      const got = walk([bad.subarray(0, cut), bad.subarray(cut)]);
      if (got.end !== want || got.messages.length !== 1) t.fail(`length ${length}, cut at ${cut}: ${JSON.stringify(got)}`);
    }
  }
  t.same(walk([Buffer.concat([Buffer.from('Z'), int32(4)])]).messages, ['Z/0:'], '4 is fine: an empty body');
  t.same(walk([Buffer.concat([Buffer.from('D'), int32(0x7fffffff)])]).end, 'mid-message', '2^31 - 1 is fine too');
});

t.test('stopping only at some types: the others are skipped, split anywhere', async (t) => {
  const stops = new Set([0x5a, 0x53, 0x4b]); // 'Z', 'S', 'K'
  const table = messageTypes(stops);
  const want = reference(small, stops);
  t.same(want.messages.map((m) => m[0]), ['Z', 'K', 'S'], 'the fixture has three of them');
  let wrong = 0;
  for (let a = 0; a <= small.length; a++) {
    for (let b = a; b <= small.length; b++) {
      const got = walk([small.subarray(0, a), small.subarray(a, b), small.subarray(b)], table);
      const expected = { messages: want.messages, atBoundary: [want.ends.has(a), want.ends.has(b), true], end: 'boundary' };
      if (JSON.stringify(got) !== JSON.stringify(expected) && ++wrong <= 3) t.same(got, expected, `cuts at ${a} and ${b}`);
    }
  }
  t.equal(wrong, 0, 'every three-chunk split');
  t.same(walk([fixture], messageTypes([])).messages, [], 'stopping at nothing walks the whole stream');
  t.same(walk([fixture], messageTypes([])).atBoundary, [true], 'and ends at its boundary');
});

t.test('random streams, split anywhere: the same as the obvious whole-stream walk', async (t) => {
  const typed = fc.tuple(fc.integer({ min: 0, max: 255 }), bytes(300)).map(([ty, b]) => message(String.fromCharCode(ty), b));
  fc.assert(
    fc.property(fc.array(typed, { maxLength: 12 }), bytes(7), fc.option(fc.uint8Array({ maxLength: 6 })), cutPoints, fc.boolean(), (ms, tail, stopList, cuts, byteByByte) => {
      // A tail of random bytes: a truncated message, a bad length, or nothing.
      const stream = Buffer.concat([...ms, tail]);
      const stops = stopList === null ? undefined : new Set(stopList);
      const want = reference(stream, stops);
      const pieces = byteByByte ? oneByteAtATime(stream) : chunked(stream, cuts);
      const got = walk(pieces, stops === undefined ? ALL : messageTypes(stops));
      if (JSON.stringify(got.messages) !== JSON.stringify(want.messages) || got.end !== want.end) {
        throw new Error(`got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
      }
      let offset = 0;
      got.atBoundary.forEach((at, k) => {
        offset += pieces[k]!.length;
        if (at !== want.ends.has(offset)) throw new Error(`atBoundary() ${at} after ${offset} bytes`);
      });
    }),
    { numRuns: 3000, seed: FUZZ_SEED },
  );
  t.pass('messages (all, or those of a random few types), bodies, boundaries and the framing error as in one whole-stream walk');
});
