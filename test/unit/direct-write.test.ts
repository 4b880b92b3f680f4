// DirectWriter over real loopback sockets: order under mixed direct and stream writes, a write
// that goes async (the peer not reading) keeps its chunk alive and holds the producer back, and
// the stream path whenever the socket is closing or gone.

import type { Socket } from 'node:net';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { DirectWriter, directWritesAvailable, FULL, HELD } from '../../src/proxy/direct-write';
import { loopbackPair } from '../harness/sockets';
import { eventually, holdsFor } from '../harness/waiting';

/**
 * A connected pair. The reading end is accepted paused, so until `startReading` its kernel buffer
 * fills and stays full: a write behind it stays pending however long the test takes.
 */
async function pair(t: tap.Test, { reading = true } = {}): Promise<{ writer: Socket; reader: Socket; received: () => Buffer; startReading: () => void }> {
  const { accepted: reader, peer: writer } = await loopbackPair(t, { pauseOnConnect: true });
  const chunks: Buffer[] = [];
  const startReading = (): void => {
    reader.on('data', (chunk: Buffer) => chunks.push(chunk));
    reader.resume(); // accepted paused, a data listener alone does not start it
  };
  if (reading) startReading();
  return { writer, reader, received: () => Buffer.concat(chunks), startReading };
}

/** `length` bytes counting up from `seed`, so a reordered or overwritten stretch shows. */
function pattern(seed: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (seed + i) & 0xff;
  return b;
}

t.test('the binding is there on this Node (else every write takes the stream path)', async (t) => {
  t.ok(directWritesAvailable);
});

t.test('bytes arrive in order under mixed direct and stream writes', async (t) => {
  const { writer, received } = await pair(t);
  const out = DirectWriter.for(writer);
  const expected: Buffer[] = [];
  const send = (b: Buffer, how: 'direct' | 'stream'): void => {
    expected.push(b);
    if (how === 'direct') out.write(b);
    else writer.write(b);
  };
  send(Buffer.from('one;'), 'direct');
  t.equal(out.direct, 1, 'nothing queued: written directly');
  // Corked, the stream holds what it is given: the writer must queue behind it, not overtake it.
  writer.cork();
  send(Buffer.from('two;'), 'stream');
  send(Buffer.from('three;'), 'direct');
  t.equal(out.direct, 1, 'queued behind the corked bytes');
  writer.uncork();
  send(Buffer.from('four;'), 'direct');
  // Interleaved runs of larger writes, some of which may go async.
  for (let i = 0; i < 40; i++) send(pattern(i, 1 + ((i * 7919) % 200_000)), i % 3 === 0 ? 'stream' : 'direct');
  const all = Buffer.concat(expected);
  await eventually(() => received().length >= all.length, 'every byte');
  t.ok(received().equals(all), 'in the order written');
});

t.test('a write that goes async keeps its chunk alive and holds the producer until the peer reads', async (t) => {
  const { writer, received, startReading } = await pair(t, { reading: false });
  const out = DirectWriter.for(writer);
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;

  // The chunks are referenced only by the writer's pending requests once written.
  let outcome = 0;
  let sent = 0;
  const lengths: number[] = [];
  while ((outcome & FULL) === 0 && lengths.length < 1000) {
    const length = 1 << 20;
    outcome = out.write(pattern(lengths.length, length));
    lengths.push(length);
    sent += length;
  }
  t.equal(outcome, HELD | FULL, 'the last write is pending in libuv: chunk held, producer told to stop');
  t.equal(writer.writableLength, 0, 'nothing went through the stream');
  let drained = false;
  out.whenDrained(() => (drained = true));
  // A write made anyway while one is pending goes behind it (libuv's queue), not in front.
  const tail = pattern(99, 1000);
  t.equal(out.write(tail) & HELD, HELD, 'written behind the pending one, and held too');
  gc();
  gc();
  const quiet = await holdsFor(200, 'the peer reads nothing while paused', () => !drained);
  t.ok(quiet.held, `not drained while the peer does not read: ${quiet.summary}`);
  // Scribbling over fresh allocations would show if a pending chunk had been freed and reused.
  for (let i = 0; i < 64; i++) Buffer.alloc(1 << 20, 0xee);
  startReading();
  await eventually(() => drained, 'the drain callback after the peer reads');
  await eventually(() => received().length >= sent + tail.length, 'every byte');
  const expected = Buffer.concat([...lengths.map((length, i) => pattern(i, length)), tail]);
  t.ok(received().equals(expected), 'intact and in order');
});

t.test('a full stream path reports FULL and drains through the stream', async (t) => {
  const { writer, received, startReading } = await pair(t, { reading: false });
  const out = DirectWriter.for(writer);
  writer.cork(); // forces the stream path
  const big = pattern(5, 1 << 20);
  const outcome = out.write(big);
  t.equal(outcome, HELD | FULL, 'queued in the stream, above its high-water mark');
  let drained = false;
  out.whenDrained(() => (drained = true));
  writer.uncork();
  startReading();
  await eventually(() => drained, "the stream's drain");
  await eventually(() => received().length >= big.length, 'every byte');
  t.ok(received().equals(big));
});

t.test('the stream path while the socket is ending or gone', async (t) => {
  const ending = await pair(t);
  const out = DirectWriter.for(ending.writer);
  ending.writer.end('last;');
  const errors: Error[] = [];
  ending.writer.on('error', (err) => errors.push(err));
  out.write(Buffer.from('late'));
  t.equal(out.direct, 0, 'not written directly after end()');
  await eventually(() => errors.length === 1, 'the stream error for a write after end');
  t.match(errors[0]!.message, /write after end/);

  const gone = await pair(t);
  const out2 = DirectWriter.for(gone.writer);
  gone.writer.destroy();
  t.doesNotThrow(() => out2.write(Buffer.from('nowhere')));
  t.equal(out2.direct, 0, 'no handle: the stream path');
  await once(gone.writer, 'close');
  t.doesNotThrow(() => out2.write(Buffer.from('nowhere')));
  t.equal(out2.direct, 0);
});

t.test('a direct write that fails destroys the socket with the write error', async (t) => {
  const { writer } = await pair(t);
  const out = DirectWriter.for(writer);
  // A reset peer shows first to whichever syscall comes next, often the read; a handle whose
  // write fails as EPIPE does makes the write path the one tested.
  const handle = (writer as unknown as { _handle: { writeBuffer: (req: unknown, data: Buffer) => number } })._handle;
  handle.writeBuffer = () => -32;
  const errored = once(writer, 'error') as Promise<[NodeJS.ErrnoException]>;
  t.equal(out.write(Buffer.from('into a broken pipe')), 0);
  t.ok(writer.destroyed, 'destroyed at once');
  const [err] = await errored;
  t.equal(err.syscall, 'write');
  t.equal(err.code, 'EPIPE');
});

t.test('a TLS-like or non-socket stream always takes the stream path', async (t) => {
  const { writer, received } = await pair(t);
  (writer as Socket & { encrypted?: boolean }).encrypted = true;
  const out = DirectWriter.for(writer);
  out.write(Buffer.from('via stream'));
  t.equal(out.direct, 0);
  await eventually(() => received().toString() === 'via stream', 'the bytes');
});
