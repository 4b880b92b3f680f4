// fast-check generators for what a client may send before and after its startup: packets valid, truncated, oversized, of the wrong protocol, or noise.

import fc from 'fast-check';
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_PACKET_LENGTH,
  SSL_REQUEST_CODE,
} from '../../src/protocol/codes';
import { cancelRequest, startupMessage } from '../../src/protocol/startup';

/** The seed every fuzz test starts from unless PGFLOAT_FUZZ_SEED says otherwise; printed so a failure can be replayed. */
export const FUZZ_SEED = Number(process.env.PGFLOAT_FUZZ_SEED ?? 0x5eed2026);
/** Connections test/integration/client-bytes-fuzz.test.ts makes through a real pgfloat; with the unit file's properties, the suite's case count. */
export const FUZZ_CONNECTIONS = 5_500;

export function int32s(...values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeInt32BE(v | 0, i * 4));
  return out;
}

/** A startup-style packet: Int32 length (computed unless given), Int32 code, body. */
export function packet(code: number, body: Uint8Array = Buffer.alloc(0), length?: number): Buffer {
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(length ?? out.length, 0);
  out.writeInt32BE(code | 0, 4);
  out.set(body, 8);
  return out;
}

export const sslRequest = (): Buffer => packet(SSL_REQUEST_CODE);
export const gssencRequest = (): Buffer => packet(GSSENC_REQUEST_CODE);

export function protocolCode(major: number, minor: number): number {
  return ((major << 16) | minor) >>> 0;
}

/** Random bytes; fast-check keeps arrays short (about 10) unless told, so one time in four the length ranges up to `maxLength`. */
export const bytes = (maxLength: number, minLength = 0): fc.Arbitrary<Buffer> =>
  fc
    .oneof({ weight: 3, arbitrary: fc.uint8Array({ minLength, maxLength }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength, maxLength, size: 'max' }) })
    .map((u) => Buffer.from(u));

/** Parameter names and values: any UTF-8 text without NUL (the terminator). */
const cstring = (minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: 'grapheme', minLength, maxLength, size: 'medium' }).map((s) => s.replace(/\0/g, ''));

/** StartupMessage parameters, always with a user, in generation order. */
export const startupParameters: fc.Arbitrary<Record<string, string>> = fc
  .tuple(cstring(1, 12), fc.uniqueArray(fc.tuple(cstring(1, 12), cstring(0, 40)), { maxLength: 5, selector: ([k]) => k }))
  .map(([user, pairs]) => {
    const out: Record<string, string> = { user };
    for (const [k, v] of pairs) if (k !== '' && k !== 'user') out[k] = v;
    return out;
  })
  .filter((p) => p.user !== '');

export const validStartup: fc.Arbitrary<Buffer> = fc
  .tuple(startupParameters, fc.constantFrom(0, 0, 2))
  .map(([params, minor]) => startupMessage(params, minor))
  .filter((b) => b.length - 4 <= MAX_STARTUP_PACKET_LENGTH);

/** Every kind of packet PostgreSQL accepts first. */
export const validFirstPacket: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: validStartup },
  { weight: 1, arbitrary: fc.constant(sslRequest()) },
  { weight: 1, arbitrary: fc.constant(gssencRequest()) },
  { weight: 1, arbitrary: fc.tuple(fc.integer(), bytes(256, 4)).map(([pid, key]) => cancelRequest(pid, key)) },
);

/** A valid packet cut short: `keep` bytes of it, 0 <= keep < length. */
export const truncatedPacket: fc.Arbitrary<Buffer> = fc
  .tuple(validFirstPacket, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }))
  .map(([p, f]) => p.subarray(0, Math.floor(f * p.length)));

/** A length outside 8..MAX_STARTUP_PACKET_LENGTH + 4 (the limit is on what follows the length word): negative, tiny, just over, huge; then anything. */
export const oversizedLength: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: -0x80000000, max: 7 }),
  fc.integer({ min: MAX_STARTUP_PACKET_LENGTH + 5, max: MAX_STARTUP_PACKET_LENGTH + 20 }),
  fc.integer({ min: MAX_STARTUP_PACKET_LENGTH + 5, max: 0x7fffffff }),
);
export const oversizedPacket: fc.Arbitrary<{ length: number; bytes: Buffer }> = fc
  .tuple(oversizedLength, bytes(64))
  .map(([length, tail]) => ({ length, bytes: Buffer.concat([int32s(length), tail]) }));

/** Protocol major.minor from 0.0 to 9.9 (3.x is the one accepted), with otherwise valid parameters. */
export const versionedStartup: fc.Arbitrary<{ major: number; minor: number; bytes: Buffer }> = fc
  .tuple(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 9 }), startupParameters)
  .map(([major, minor, params]) => {
    const out = startupMessage(params);
    out.writeUInt32BE(protocolCode(major, minor), 4);
    return { major, minor, bytes: out };
  });

/** A plausible length (so the parser reads on), one of the known codes or any, then noise. */
export const plausibleGarbage: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.integer({ min: 8, max: 300 }),
    fc.oneof(
      fc.constantFrom(SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE, protocolCode(3, 0), protocolCode(3, 2), protocolCode(1234, 5681)),
      fc.integer(),
    ),
    bytes(300),
    fc.boolean(),
  )
  .map(([length, code, tail, exact]) => {
    const body = exact ? Buffer.concat([tail, Buffer.alloc(Math.max(0, length - 8 - tail.length))]).subarray(0, Math.max(0, length - 8)) : tail;
    return packet(code, body, length);
  });

/** A valid StartupMessage with a few bytes after the header overwritten (terminators removed or added), the length kept. */
export const mangledStartup: fc.Arbitrary<Buffer> = fc
  .tuple(validStartup, fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.constantFrom(0, 0x41, 0xff)), { minLength: 1, maxLength: 4 }))
  .map(([p, edits]) => {
    const out = Buffer.from(p);
    for (const [f, value] of edits) out[8 + Math.floor(f * (out.length - 8))] = value;
    return out;
  });

/** Anything a client could send first: valid, truncated, oversized, wrong version, mangled, plausible or pure noise. */
export const anyFirstBytes: fc.Arbitrary<Buffer> = fc.oneof(
  validFirstPacket,
  truncatedPacket,
  mangledStartup,
  oversizedPacket.map((o) => o.bytes),
  versionedStartup.map((v) => v.bytes),
  plausibleGarbage,
  bytes(80),
);

/** Cut points for a buffer of any length, given as fractions so they shrink well. */
export const cutPoints: fc.Arbitrary<number[]> = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 });

/** `data` split at `cuts` (fractions of its length); every piece non-empty, together exactly `data`. */
export function chunked(data: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((f) => Math.floor(f * data.length)))].filter((p) => p > 0 && p < data.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...points, data.length]) {
    if (p > from) out.push(data.subarray(from, p));
    from = p;
  }
  return out;
}

export function oneByteAtATime(data: Buffer): Buffer[] {
  return Array.from({ length: data.length }, (_, i) => data.subarray(i, i + 1));
}
