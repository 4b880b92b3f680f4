// Property tests of every parser that reads client bytes (startup packets, both streams of a session, server framing): random, truncated, oversized and chunked any way.

import t from 'tap';
import fc from 'fast-check';
import { MAX_STARTUP_PACKET_LENGTH, SqlState } from '../../src/protocol/codes';
import { errorMessageOf, FramingError, MessageScanner, transactionStatus } from '../../src/protocol/message-scanner';
import { parseStartupPacket, startupMessage, type StartupParseResult } from '../../src/protocol/startup';
import { TransactionTracker, type ReadyStatus } from '../../src/protocol/transaction-tracker';
import {
  anyFirstBytes, bytes, chunked, cutPoints, FUZZ_CONNECTIONS, FUZZ_SEED, gssencRequest, oneByteAtATime, oversizedPacket, sslRequest,
  startupParameters, truncatedPacket, validFirstPacket, versionedStartup,
} from '../harness/client-bytes';
import { conversation, message, oddLength, rarely, type Dir, type Step } from '../harness/session-streams';

let generated = 0;
/** Runs a property with the file's seed and counts its cases toward the total. */
function check<T>(property: fc.IProperty<T>, numRuns: number): void {
  fc.assert(property, { numRuns, seed: FUZZ_SEED });
  generated += numRuns;
}

/** A parse result as comparable plain data. */
function describe(r: StartupParseResult): string {
  if (r.status !== 'ok') return JSON.stringify(r);
  const p = r.packet;
  const detail =
    p.kind === 'startup' ? { ...p, parameters: [...p.parameters], raw: p.raw.toString('hex') }
    : p.kind === 'cancel-request' ? { ...p, secretKey: p.secretKey.toString('hex') }
    : p;
  return JSON.stringify({ length: r.length, ...detail });
}

function parseSafely(input: Buffer): StartupParseResult {
  const r = parseStartupPacket(input);
  if (r.status === 'ok' && r.length > input.length) throw new Error(`ok with length ${r.length} beyond the ${input.length} bytes given`);
  if (r.status === 'invalid' && (!/^[0-9A-Z]{5}$/.test(r.refusal.code) || r.refusal.message === '')) throw new Error(`bad refusal ${JSON.stringify(r)}`);
  return r;
}

t.comment(`fast-check seed ${FUZZ_SEED} (set PGFLOAT_FUZZ_SEED to replay another)`);

t.test('parseStartupPacket', async (t) => {
  check(fc.property(anyFirstBytes, (input) => void parseSafely(input)), 20_000);
  t.pass('random, truncated, oversized and wrong-version packets: never throws; ok, incomplete or a refusal with a SQLSTATE');

  // What follows a packet (the next packet, a pipelined query) has NULs in it too.
  const trailing = fc.tuple(bytes(16), bytes(16)).map(([a, b]) => Buffer.concat([a, Buffer.from([0]), b]));
  // The session parses its growing buffer after every chunk: an early answer must be the final one.
  check(
    fc.property(anyFirstBytes, fc.double({ min: 0, max: 1, noNaN: true }), trailing, (input, f, extra) => {
      const whole = describe(parseSafely(input));
      const prefix = describe(parseSafely(input.subarray(0, Math.floor(f * input.length))));
      if (prefix !== '{"status":"incomplete"}' && prefix !== whole) throw new Error(`prefix gave ${prefix}, whole ${whole}`);
      if (whole !== '{"status":"incomplete"}' && describe(parseSafely(Buffer.concat([input, extra]))) !== whole) throw new Error('bytes after a decided packet changed the answer');
    }),
    15_000,
  );
  t.pass('a prefix is incomplete or already the final answer; bytes after a decided packet change nothing');

  check(fc.property(truncatedPacket, (input) => parseSafely(input).status === 'incomplete'), 10_000);
  t.pass('every truncated valid packet is incomplete (it waits, it never refuses early)');

  check(
    fc.property(oversizedPacket, ({ length, bytes: input }) => {
      for (const given of [input.subarray(0, 4), input]) {
        const r = parseSafely(given);
        if (r.status !== 'invalid' || r.refusal.code !== SqlState.protocolViolation || r.refusal.silent !== true || !r.refusal.message.includes(`length of startup packet: ${length}`)) return false;
      }
      return true;
    }),
    5_000,
  );
  t.pass(`lengths outside 8..${MAX_STARTUP_PACKET_LENGTH + 4} are refused silently (08P01, logged only) from the 4 length bytes alone`);

  check(
    fc.property(versionedStartup, ({ major, minor, bytes: input }) => {
      const r = parseSafely(input);
      if (major === 3) return r.status === 'ok' && r.packet.kind === 'startup' && r.packet.minorVersion === minor;
      return r.status === 'invalid' && r.refusal.code === SqlState.featureNotSupported && r.refusal.message.includes(`protocol ${major}.${minor}:`);
    }),
    5_000,
  );
  t.pass('protocol 0.0 to 9.9: 3.x parses (minor kept), every other version is 0A000 naming it');

  check(
    fc.property(startupParameters, fc.constantFrom(0, 2), (params, minor) => {
      const input = startupMessage(params, minor);
      if (input.length - 4 > MAX_STARTUP_PACKET_LENGTH) return true;
      const r = parseSafely(input);
      return r.status === 'ok' && r.packet.kind === 'startup' && r.length === input.length && r.packet.raw.equals(input) &&
        JSON.stringify([...r.packet.parameters]) === JSON.stringify(Object.entries(params));
    }),
    5_000,
  );
  t.pass('generated StartupMessages (any UTF-8 text) parse back to their parameters, in order, raw kept');
});

/** What the session's startup loop does with a stream of chunks: the packets it takes, in order, and what is left over. */
function driveStartup(chunks: readonly Buffer[]): string {
  let pending: Buffer = Buffer.alloc(0);
  const taken: string[] = [];
  let done = false;
  for (const chunk of chunks) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (!done && pending.length > 0) {
      const r = parseSafely(pending);
      if (r.status === 'incomplete') break;
      taken.push(describe(r));
      if (r.status === 'invalid') done = true;
      else {
        pending = pending.subarray(r.length);
        done = r.packet.kind === 'startup' || r.packet.kind === 'cancel-request';
      }
    }
  }
  return JSON.stringify({ taken, left: done ? pending.toString('hex') : `undecided:${pending.length}` });
}

t.test('a startup split at random points, or sent one byte at a time, parses as when sent whole', async (t) => {
  const conversation = fc
    .tuple(fc.array(fc.constantFrom(sslRequest(), gssencRequest()), { maxLength: 2 }), fc.oneof(validFirstPacket, anyFirstBytes), bytes(40))
    .map(([negotiation, first, after]) => Buffer.concat([...negotiation, first, after]));
  check(
    fc.property(conversation, cutPoints, (stream, cuts) => {
      const whole = driveStartup([stream]);
      return driveStartup(chunked(stream, cuts)) === whole && driveStartup(oneByteAtATime(stream)) === whole;
    }),
    5_000,
  );
  t.pass('same packets, same leftovers');
});

// ---------------------------------------------------------------------------------------------
// Established sessions: TransactionTracker on both streams, MessageScanner on the server's.

interface TrackerState { idle: boolean; boundary: boolean; status: ReadyStatus; lost: boolean }
const stateOf = (tr: TransactionTracker): TrackerState => ({ idle: tr.idle(), boundary: tr.atServerBoundary(), status: tr.lastStatus(), lost: tr.isLost() });
const same = (a: TrackerState, b: TrackerState): boolean => a.idle === b.idle && a.boundary === b.boundary && a.status === b.status && a.lost === b.lost;

/** Feeds one step's bytes in pieces, alternately as subarrays and as offsets into the whole step buffer. */
function feed(tr: TransactionTracker, [dir, data]: Step, pieces: readonly Buffer[]): void {
  let from = 0;
  pieces.forEach((piece, i) => {
    const [buf, start, end] = i % 2 === 0 ? [piece, 0, piece.length] : [data, from, from + piece.length];
    if (dir === 'c') tr.client(buf, start, end);
    else tr.server(buf, start, end);
    from += piece.length;
  });
}

t.test('TransactionTracker', async (t) => {
  check(
    fc.property(conversation, fc.array(cutPoints, { maxLength: 40 }), fc.boolean(), (exchanges, cuts, byteByByte) => {
      const whole = new TransactionTracker();
      const split = new TransactionTracker();
      let status: ReadyStatus = 'I';
      let terminated = false;
      let n = 0;
      for (const ex of exchanges) {
        for (const step of ex.steps) {
          feed(whole, step, [step[1]]);
          feed(split, step, byteByByte && step[1].length < 4096 ? oneByteAtATime(step[1]) : chunked(step[1], cuts[n++ % Math.max(1, cuts.length)] ?? []));
          if (!same(stateOf(whole), stateOf(split))) throw new Error(`chunked ${JSON.stringify(stateOf(split))} != whole ${JSON.stringify(stateOf(whole))}`);
        }
        status = ex.status ?? status;
        terminated ||= ex.terminates === true;
        const s = stateOf(whole);
        if (s.lost || s.status !== status || s.idle !== (status === 'I' && !terminated)) throw new Error(`after an exchange expected ${status}, got ${JSON.stringify(s)}`);
      }
    }),
    5_000,
  );
  t.pass('valid conversations chunked any way: the same idle()/lastStatus() after every step as fed whole, and the expected one after every exchange');

  // Noise: random bytes, or random messages with now and then a corrupted length, in both directions.
  const noisyMessage = fc.tuple(fc.integer({ min: 0, max: 255 }), bytes(24), rarely(oddLength, 8)).map(([ty, b, len]) => {
    const m = message(String.fromCharCode(ty), b);
    if (len !== null) m.writeInt32BE(len, 1);
    return m;
  });
  const noiseStep = fc.tuple(fc.constantFrom<Dir>('c', 's'), fc.oneof(bytes(64), fc.array(noisyMessage, { maxLength: 6 }).map((ms) => Buffer.concat(ms))));
  check(
    fc.property(fc.array(noiseStep, { maxLength: 10 }), fc.array(cutPoints, { maxLength: 10 }), (steps, cuts) => {
      const whole = new TransactionTracker();
      const split = new TransactionTracker();
      let wasLost = false;
      steps.forEach((step, i) => {
        feed(whole, step, [step[1]]);
        feed(split, step, chunked(step[1], cuts[i] ?? []));
        const s = stateOf(whole);
        if (!same(s, stateOf(split))) throw new Error('chunking changed the state');
        if (wasLost && !s.lost) throw new Error('found its way again after being lost');
        if (s.idle && !s.boundary) throw new Error('idle but not at a server boundary');
        wasLost = s.lost;
      });
    }),
    10_000,
  );
  t.pass('random streams: never throws, chunking changes nothing, lost stays lost, idle only at a boundary');
});

t.test('MessageScanner', async (t) => {
  const typePool = [...'KZERSCDTN1'];
  const typed = fc.tuple(fc.constantFrom(...typePool), bytes(200)).map(([ty, b]) => ({ type: ty, body: b }));
  check(
    fc.property(fc.array(typed, { maxLength: 12 }), fc.subarray(typePool), rarely(fc.integer({ min: 1, max: 200_000 }), 8), cutPoints, fc.boolean(),
      (ms, collect, big, cuts, byteByByte) => {
        const all = big === null ? ms : [...ms, { type: 'D', body: Buffer.alloc(big, 7) }];
        const want = new Set(collect.filter((ty) => ty !== 'D').map((ty) => ty.charCodeAt(0)));
        const stream = Buffer.concat(all.map((m) => message(m.type, m.body)));
        const ends = new Set<number>([0]);
        all.reduce((offset, m) => (ends.add(offset + 5 + m.body.length), offset + 5 + m.body.length), 0);
        const got: string[] = [];
        const scanner = new MessageScanner(want, (ty, body) => got.push(`${String.fromCharCode(ty)}:${body.toString('hex')}`));
        let offset = 0;
        for (const piece of byteByByte && stream.length < 4096 ? oneByteAtATime(stream) : chunked(stream, cuts)) {
          scanner.push(piece);
          offset += piece.length;
          if (scanner.atBoundary() !== ends.has(offset)) throw new Error(`atBoundary() wrong at ${offset}`);
        }
        const expected = all.filter((m) => want.has(m.type.charCodeAt(0))).map((m) => `${m.type}:${m.body.toString('hex')}`);
        return JSON.stringify(got) === JSON.stringify(expected);
      }),
    5_000,
  );
  t.pass('valid streams chunked any way: exactly the collected messages, atBoundary() exactly at message ends');

  const collect = new Set([0x4b, 0x5a, 0x45]);
  const limit = 256;
  const run = (chunks: readonly Buffer[]): { got: string[]; end: string } => {
    const got: string[] = [];
    const scanner = new MessageScanner(collect, (ty, body) => {
      got.push(`${ty}:${body.toString('hex')}`);
      if (ty === 0x45) errorMessageOf(body);
      if (ty === 0x5a) transactionStatus(body);
    }, limit);
    try {
      for (const chunk of chunks) scanner.push(chunk);
    } catch (err) {
      if (!(err instanceof FramingError)) throw err;
      return { got, end: `error: ${err.message}` };
    }
    return { got, end: scanner.atBoundary() ? 'boundary' : 'mid-message' };
  };
  /** The same walk done the obvious way over the whole stream. */
  const reference = (stream: Buffer): { got: string[]; end: string } => {
    const got: string[] = [];
    let offset = 0;
    for (; offset + 5 <= stream.length; ) {
      const ty = stream[offset]!;
      const length = stream.readInt32BE(offset + 1);
      if (length < 4 || (collect.has(ty) && length - 4 > limit)) return { got, end: 'error' };
      if (offset + 1 + length > stream.length) break;
      if (collect.has(ty)) got.push(`${ty}:${stream.toString('hex', offset + 5, offset + 1 + length)}`);
      offset += 1 + length;
    }
    return { got, end: offset === stream.length ? 'boundary' : 'mid-message' };
  };
  const noisy = fc.oneof(bytes(200), fc.array(fc.tuple(fc.constantFrom('K', 'Z', 'E', 'D'), bytes(300), rarely(oddLength, 6)), { maxLength: 6 }).map((ms) =>
    Buffer.concat(ms.map(([ty, b, len]) => {
      const m = message(ty, b);
      if (len !== null) m.writeInt32BE(len, 1);
      return m;
    }))));
  check(
    fc.property(noisy, cutPoints, (stream, cuts) => {
      const whole = run([stream]);
      const expected = reference(stream);
      if (JSON.stringify(run(chunked(stream, cuts))) !== JSON.stringify(whole)) throw new Error('chunking changed the outcome');
      return JSON.stringify(whole.got) === JSON.stringify(expected.got) && (whole.end.startsWith('error') ? 'error' : whole.end) === expected.end;
    }),
    10_000,
  );
  t.pass('random streams: only FramingError is thrown, at the same point and after the same messages however chunked');
});

t.test('case count', async (t) => {
  const suite = generated + FUZZ_CONNECTIONS;
  t.comment(`${generated} generated cases in this file, ${FUZZ_CONNECTIONS} generated connections in test/integration/client-bytes-fuzz.test.ts: ${suite} in the suite`);
  t.ok(suite >= 100_000, `at least 100,000 generated cases in the suite (${suite})`);
});
