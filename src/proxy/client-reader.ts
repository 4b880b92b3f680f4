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
  /** While unset (no relay running), chunks go out as copies in 'data' events, as before adoption. */
  sink: ClientChunkSink | undefined;

  private constructor(private readonly socket: Socket) {}

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
    const reader = new ClientReader(socket);
    const slots = socket as unknown as Record<symbol, unknown>;
    slots[fields.buffer] = reader.buffer;
    slots[fields.callback] = reader.onRead;
    // Asked after every read for the buffer of the next one.
    slots[fields.generator] = (): Buffer => reader.buffer;
    handle.useUserBuffer(reader.buffer);
    readers.set(socket, reader);
    // Closed, the socket reads no more; a buffer a pending write still used was swapped out by keepLastChunk.
    socket.once('close', reader.release);
    return reader;
  }

  /** The chunk just given is still referenced (a write that did not complete at once): read into a fresh buffer next. */
  keepLastChunk(): void {
    this.buffer = takeReadBuffer();
  }

  private readonly release = (): void => {
    giveBackReadBuffer(this.buffer);
    // Were it ever read into again, libuv fails a read into an empty buffer (ENOBUFS) rather than write anywhere.
    this.buffer = NO_BUFFER;
  };

  private readonly onRead = (nread: number, buffer: Buffer): boolean => {
    const chunk = buffer.subarray(0, nread);
    const sink = this.sink;
    if (sink === undefined) this.socket.emit('data', Buffer.from(chunk));
    else sink(chunk);
    return true; // backpressure goes through socket.pause(), which stops the handle's reads
  };
}

/** The three symbols net.Socket keeps the `onread` state in; undefined if this Node has other internals. */
function userBufferFields(socket: Socket): UserBufferFields | undefined {
  const symbols = Object.getOwnPropertySymbols(socket);
  const named = (description: string): symbol | undefined => {
    const found = symbols.find((s) => s.description === description);
    return found !== undefined && (socket as unknown as Record<symbol, unknown>)[found] === null ? found : undefined;
  };
  const buffer = named('kBuffer');
  const callback = named('kBufferCb');
  const generator = named('kBufferGen');
  return buffer && callback && generator ? { buffer, callback, generator } : undefined;
}
