// Reads an accepted client socket into one reused buffer, as net.connect's `onread` does for the
// server side. Node 20 offers `onread` only to sockets it creates for net.connect, and the client
// side's 'data' path (a fresh buffer and a Readable push per read, with its tick-queue work) was
// a quarter of the relay's user CPU (measured with perf, 2026-12-03).
//
// It relies on net.Socket's internal user-buffer fields (the ones `onread` sets, and that
// Socket.pause/resume honour), found by their symbol descriptions; where they are not there, or
// the socket is TLS or already holds unread bytes, nothing is adopted and the caller keeps 'data'.

import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { giveBackReadBuffer, READ_BUFFER_SIZE, takeReadBuffer } from './read-buffers';

export { READ_BUFFER_SIZE };

/** Takes one chunk; it points into the reused buffer, valid until the callback returns. */
export type ClientChunkSink = (chunk: Buffer) => void;

interface UserBufferHandle {
  useUserBuffer(buffer: Buffer): void;
}

interface UserBufferFields {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

const NO_BUFFER = Buffer.alloc(0);

const readers = new WeakMap<Duplex, ClientReader>();

export class ClientReader {
  private buffer = takeReadBuffer();
  /** The last chunk handed out, reused while reads land in the same buffer with the same length. */
  private view: ChunkView = { source: NO_BUFFER, chunk: NO_BUFFER };
  /** While unset (no relay running), chunks go out as copies in 'data' events, as before adoption. */
  sink: ClientChunkSink | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly generator: symbol,
  ) {}

  /** The socket's reader, adopting it on first use; undefined where it cannot be (then use 'data'). */
  static of(socket: Duplex): ClientReader | undefined {
    const known = readers.get(socket);
    if (known !== undefined) return known;
    if (!(socket instanceof Socket) || (socket as Socket & { encrypted?: boolean }).encrypted === true) return undefined;
    // Unread bytes would be overtaken by the next read; the rare session with some keeps 'data'.
    if (socket.readableLength > 0 || socket.listenerCount('data') > 0) return undefined;
    const handle = (socket as unknown as { _handle?: Partial<UserBufferHandle> | null })._handle;
    const fields = userBufferFields(socket);
    if (fields === undefined || handle == null || typeof handle.useUserBuffer !== 'function') return undefined;
    const reader = new ClientReader(socket, fields.generator);
    const slots = socket as unknown as Record<symbol, unknown>;
    slots[fields.buffer] = reader.buffer;
    slots[fields.callback] = reader.onRead;
    // No generator (the slot stays null): the handle keeps reading into the same buffer until keepLastChunk.
    handle.useUserBuffer(reader.buffer);
    readers.set(socket, reader);
    // Closed, the socket reads no more; a buffer a pending write still used was swapped out by keepLastChunk.
    socket.once('close', reader.release);
    return reader;
  }

  /** The chunk just given is still referenced (a write that did not complete at once): read into a fresh buffer next. */
  keepLastChunk(): void {
    this.buffer = takeReadBuffer();
    armGenerator(this.socket, this.generator, this.nextBuffer);
  }

  private readonly nextBuffer = (): Buffer => nextBufferOnce(this.socket, this.generator, this.buffer);

  private readonly release = (): void => {
    giveBackReadBuffer(this.buffer);
    // Were it ever read into again, libuv fails a read into an empty buffer (ENOBUFS) rather than write anywhere.
    this.buffer = NO_BUFFER;
  };

  private readonly onRead = (nread: number, buffer: Buffer): boolean => {
    const chunk = viewOf(this.view, buffer, nread);
    const sink = this.sink;
    if (sink === undefined) this.socket.emit('data', Buffer.from(chunk));
    else sink(chunk);
    return true; // backpressure goes through socket.pause(), which stops the handle's reads
  };
}

/**
 * The three symbols net.Socket keeps the `onread` state in, if this socket has them all still
 * unset; undefined if it has not, or this Node has other internals. They are the same for every
 * socket, so they are looked for once.
 */
function userBufferFields(socket: Socket): UserBufferFields | undefined {
  const fields = (knownFields ??= findUserBufferFields(socket));
  if (fields === undefined) return undefined;
  const slots = socket as unknown as Record<symbol, unknown>;
  return slots[fields.buffer] === null && slots[fields.callback] === null && slots[fields.generator] === null ? fields : undefined;
}

let knownFields: UserBufferFields | undefined;

function findUserBufferFields(socket: Socket): UserBufferFields | undefined {
  const symbols = Object.getOwnPropertySymbols(socket);
  const named = (description: string): symbol | undefined => symbols.find((s) => s.description === description);
  const buffer = named('kBuffer');
  const callback = named('kBufferCb');
  const generator = named('kBufferGen');
  return buffer && callback && generator ? { buffer, callback, generator } : undefined;
}

/**
 * The slot where a socket made with net.connect's `onread` keeps its buffer generator, which
 * Node calls after every read (and the handle then takes the buffer it returns, a few C++ type
 * checks per read). Undefined if this Node keeps it elsewhere.
 */
export function bufferGeneratorSlot(socket: Socket): symbol | undefined {
  return (knownFields ??= findUserBufferFields(socket))?.generator;
}

/** Makes Node ask `generator` for the next read's buffer, once (see nextBufferOnce). */
export function armGenerator(socket: Socket, slot: symbol, generator: () => Buffer): void {
  (socket as unknown as Record<symbol, unknown>)[slot] = generator;
}

/** A generator's body: hands `buffer` to the handle and unsets itself, so later reads reuse it without asking. */
export function nextBufferOnce(socket: Socket, slot: symbol, buffer: Buffer): Buffer {
  (socket as unknown as Record<symbol, unknown>)[slot] = null;
  return buffer;
}

/** The chunk of a read: a view of `source`'s first `length` bytes, the previous one when it would be the same. */
export interface ChunkView {
  source: Buffer;
  chunk: Buffer;
}

/**
 * Reads of one kind of traffic come in the same sizes (a query, its answer), into the same
 * buffer: the view made for the last read is reused rather than allocating one per read.
 */
export function viewOf(view: ChunkView, source: Buffer, length: number): Buffer {
  if (view.source === source && view.chunk.length === length) return view.chunk;
  view.source = source;
  return (view.chunk = source.subarray(0, length));
}
