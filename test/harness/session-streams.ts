// fast-check generators for both streams of an established session: valid conversations (queries, extended protocol, COPY) and noise.

import fc from 'fast-check';
import type { ReadyStatus } from '../../src/protocol/transaction-tracker';
import { bytes } from './client-bytes';
import { message } from './wire';

export { message };
export type Dir = 'c' | 's';
export type Step = [Dir, Buffer];
export const fromClient = (...messages: Buffer[]): Step => ['c', Buffer.concat(messages)];
export const fromServer = (...messages: Buffer[]): Step => ['s', Buffer.concat(messages)];
export interface Exchange { steps: Step[]; status?: ReadyStatus; terminates?: boolean }

const statusArb = fc.constantFrom<ReadyStatus>('I', 'T', 'E');
/** `arb` one time in `odds`, else null. */
export const rarely = <T>(arb: fc.Arbitrary<T>, odds: number): fc.Arbitrary<T | null> => fc.oneof({ weight: odds - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
/** A corrupted message length: the edge values, or anything. */
export const oddLength = fc.oneof(fc.constantFrom(0, 1, 3, 4, 5, -1, 0x7fffffff, -0x80000000), fc.integer());
export const ready = (s: ReadyStatus): Buffer => message('Z', Buffer.from(s));
/** Server messages that are neither ReadyForQuery nor CopyInResponse, now and then one large row. */
const serverNoise = fc
  .tuple(fc.array(fc.tuple(fc.constantFrom(...'123CDEIKNARSTVWcdnstv'), bytes(40)), { maxLength: 4 }), rarely(fc.integer({ min: 1, max: 150_000 }), 10))
  .map(([ms, big]) => Buffer.concat([...ms.map(([ty, b]) => message(ty, b)), ...(big === null ? [] : [message('D', Buffer.alloc(big, 0x61))])]));
const clientMsg = (types: string): fc.Arbitrary<Buffer> => fc.tuple(fc.constantFrom(...types), bytes(40)).map(([ty, b]) => message(ty, b));
const copyData = fc.array(bytes(60).map((b) => message('d', b)), { maxLength: 3 }).map((ms) => Buffer.concat(ms));

const exchange: fc.Arbitrary<Exchange> = fc.oneof(
  // Simple queries, pipelined: Q..Q, then each answer and its ReadyForQuery.
  fc.array(fc.tuple(bytes(40), serverNoise, statusArb), { minLength: 1, maxLength: 3 }).map((qs) => ({
    steps: [fromClient(...qs.map(([q]) => message('Q', q))), ...qs.map(([, noise, st]) => fromServer(noise, ready(st)))],
    status: qs[qs.length - 1]![2],
  })),
  // Extended protocol up to a Sync, answered at once or in two parts around a late Sync.
  fc.tuple(fc.array(clientMsg('PBDECH'), { minLength: 1, maxLength: 5 }), serverNoise, statusArb, fc.boolean()).map(([ms, noise, st, late]) => ({
    steps: late
      ? [fromClient(...ms), fromServer(noise), fromClient(message('S')), fromServer(ready(st))]
      : [fromClient(...ms, message('S')), fromServer(noise, ready(st))],
    status: st,
  })),
  fc.tuple(bytes(20), statusArb).map(([args, st]) => ({ steps: [fromClient(message('F', args)), fromServer(message('V', args), ready(st))], status: st })),
  // COPY FROM STDIN by Query (ended by CopyDone or CopyFail), COPY TO STDOUT.
  fc.tuple(copyData, fc.constantFrom('c', 'f'), statusArb).map(([data, end, st]) => ({
    steps: [fromClient(message('Q', Buffer.from('copy'))), fromServer(message('G', Buffer.alloc(3))), fromClient(data, message(end)), fromServer(message('C'), ready(st))],
    status: st,
  })),
  fc.tuple(copyData, statusArb).map(([data, st]) => ({
    steps: [fromClient(message('Q', Buffer.from('copy'))), fromServer(message('H', Buffer.alloc(3)), data, message('c'), message('C'), ready(st))],
    status: st,
  })),
  // COPY FROM STDIN through Execute, as libpq sends it: the Sync behind Execute is swallowed.
  fc.tuple(copyData, statusArb).map(([data, st]) => ({
    steps: [
      fromClient(...['P', 'B', 'D', 'E', 'S'].map((ty) => message(ty, Buffer.alloc(4)))),
      fromServer(message('1'), message('2'), message('n'), message('G', Buffer.alloc(3))),
      fromClient(data, message('c'), message('S')),
      fromServer(message('C'), ready(st)),
    ],
    status: st,
  })),
  // Notices, notifications and parameter changes between transactions.
  fc.array(fc.tuple(fc.constantFrom('N', 'A', 'S'), bytes(30)), { minLength: 1, maxLength: 3 }).map((ms) => ({ steps: [fromServer(...ms.map(([ty, b]) => message(ty, b)))] })),
);

export const conversation = fc
  .tuple(fc.boolean(), bytes(30), fc.array(exchange, { maxLength: 6 }), fc.boolean())
  .map(([withPassword, secret, exchanges, terminate]): Exchange[] => {
    const auth = withPassword ? [fromServer(message('R', Buffer.from([0, 0, 0, 10]))), fromClient(message('p', secret))] : [];
    const startup: Exchange = { steps: [...auth, fromServer(message('R', Buffer.alloc(4)), message('K', Buffer.alloc(8)), ready('I'))], status: 'I' };
    return [startup, ...exchanges, ...(terminate ? [{ steps: [fromClient(message('X'))], terminates: true }] : [])];
  });
