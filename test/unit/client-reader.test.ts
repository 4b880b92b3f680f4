// ClientReader over real loopback sockets: chunks into one reused buffer, 'data' copies while no
// relay takes them, pause/resume as backpressure, and no adoption where it would lose bytes.

import type { Socket } from 'node:net';
import { once } from 'node:events';
import t from 'tap';
import { ClientReader } from '../../src/proxy/client-reader';
import { freeReadBuffers, takeReadBuffer } from '../../src/proxy/read-buffers';
import { loopbackPair } from '../harness/sockets';
import { eventually, holdsFor } from '../harness/waiting';

const pair = (t: tap.Test): Promise<{ accepted: Socket; peer: Socket }> => loopbackPair(t);

/** Takes every chunk as a relay whose write is still pending would: the reader must read the next one elsewhere. */
function keepEveryChunk(reader: ClientReader): Buffer[] {
  const kept: Buffer[] = [];
  reader.sink = (chunk) => {
    kept.push(chunk);
    reader.keepLastChunk();
  };
  return kept;
}

t.test('an adopted socket hands chunks to the sink, in one reused buffer', async (t) => {
  const { accepted, peer } = await pair(t);
  const reader = ClientReader.of(accepted);
  t.ok(reader, 'adopted');
  t.equal(ClientReader.of(accepted), reader, 'once per socket');
  const seen: string[] = [];
  const buffers = new Set<ArrayBuffer>();
  reader!.sink = (chunk) => {
    seen.push(chunk.toString());
    buffers.add(chunk.buffer as ArrayBuffer);
  };
  accepted.on('data', () => t.fail('no data event while a sink takes the chunks'));
  for (const word of ['one', 'two', 'three']) {
    peer.write(word);
    await eventually(() => seen.join('').endsWith(word), `"${word}" to arrive`);
  }
  t.equal(seen.join(''), 'onetwothree');
  t.equal(buffers.size, 1, 'every read went into the same buffer');
});

t.test('keepLastChunk leaves the last chunk intact: the next read goes to a fresh buffer', async (t) => {
  const { accepted, peer } = await pair(t);
  const reader = ClientReader.of(accepted)!;
  const kept = keepEveryChunk(reader);
  peer.write('first');
  await eventually(() => kept.length === 1, 'the first chunk');
  peer.write('second');
  await eventually(() => kept.length === 2, 'the second chunk');
  t.same(kept.map(String), ['first', 'second']);
});

t.test('without a sink, chunks come as copies in data events; pause stops reading, resume goes on', async (t) => {
  const { accepted, peer } = await pair(t);
  const reader = ClientReader.of(accepted)!;
  const seen: Buffer[] = [];
  accepted.on('data', (chunk: Buffer) => seen.push(chunk));
  peer.write('hello');
  await eventually(() => seen.length === 1, 'a data event');
  t.equal(String(seen[0]), 'hello');
  peer.write('again');
  await eventually(() => seen.length === 2, 'a second data event');
  t.equal(String(seen[0]), 'hello', 'the first copy is not overwritten by the next read');

  const viaSink: string[] = [];
  reader.sink = (chunk) => viaSink.push(chunk.toString());
  accepted.pause();
  peer.write('held');
  const quiet = await holdsFor(200, 'a loopback read arrives well within 1 ms', () => viaSink.length === 0);
  t.ok(quiet.held, `nothing read while paused: ${quiet.summary}`);
  accepted.resume();
  await eventually(() => viaSink.join('') === 'held', 'the held bytes after resume');
});

t.test('the end of the stream still ends the socket', async (t) => {
  const { accepted, peer } = await pair(t);
  const reader = ClientReader.of(accepted)!;
  reader.sink = () => undefined;
  accepted.resume();
  const ended = once(accepted, 'end');
  peer.end('bye');
  await ended;
  t.pass('end emitted');
});

t.test('not adopted where bytes are already buffered, or a data listener is attached', async (t) => {
  const first = await pair(t);
  first.accepted.pause();
  first.peer.write('early');
  await eventually(() => first.accepted.readableLength > 0, 'the bytes to be buffered');
  t.equal(ClientReader.of(first.accepted), undefined, 'buffered bytes would be overtaken');
  const second = await pair(t);
  second.accepted.on('data', () => undefined);
  t.equal(ClientReader.of(second.accepted), undefined, 'someone reads it already');
});

t.test('a closed socket gives its read buffer back: the next adopted socket reads into it', async (t) => {
  const first = await pair(t);
  const reader = ClientReader.of(first.accepted)!;
  const used = new Set<ArrayBuffer>();
  reader.sink = (chunk) => used.add(chunk.buffer as ArrayBuffer);
  first.peer.write('x');
  await eventually(() => used.size === 1, 'a read');
  const idle = freeReadBuffers();
  first.accepted.destroy();
  await once(first.accepted, 'close');
  t.equal(freeReadBuffers(), idle + 1, 'given back on close');

  const second = await pair(t);
  const next = ClientReader.of(second.accepted)!;
  const seen: ArrayBuffer[] = [];
  next.sink = (chunk) => seen.push(chunk.buffer as ArrayBuffer);
  second.peer.write('y');
  await eventually(() => seen.length === 1, 'a read on the second socket');
  t.ok(used.has(seen[0]!), 'the same buffer');
});

t.test('a buffer a pending write may still hold is not given back', async (t) => {
  const { accepted, peer } = await pair(t);
  const reader = ClientReader.of(accepted)!;
  const kept = keepEveryChunk(reader);
  peer.write('held');
  await eventually(() => kept.length === 1, 'a read');
  accepted.destroy();
  await once(accepted, 'close');
  const taken = Array.from({ length: freeReadBuffers() }, () => takeReadBuffer());
  t.notOk(taken.some((b) => b.buffer === kept[0]!.buffer), 'the kept chunk is in no pooled buffer');
  t.equal(String(kept[0]), 'held');
});

t.test('after keepLastChunk the reads go on in the fresh buffer, and stay there', async (t) => {
  const { accepted, peer } = await pair(t);
  const reader = ClientReader.of(accepted)!;
  const chunks: Buffer[] = [];
  reader.sink = (chunk) => {
    chunks.push(chunk);
    if (chunks.length === 1) reader.keepLastChunk();
  };
  for (const word of ['a', 'b', 'c']) {
    peer.write(word);
    await eventually(() => chunks.length > 0 && String(chunks[chunks.length - 1]) === word, `"${word}"`);
  }
  t.not(chunks[1]!.buffer, chunks[0]!.buffer, 'the read after keepLastChunk went elsewhere');
  t.equal(chunks[2]!.buffer, chunks[1]!.buffer, 'and the next one into the same buffer again');
  t.equal(String(chunks[0]), 'a', 'the kept chunk is intact');
});
