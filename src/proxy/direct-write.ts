// Writes relayed chunks straight to a socket's libuv handle when its stream has nothing queued, skipping the Writable machinery.
//
// socket.write goes through Writable.write, _write, _writeGeneric, a fresh WriteWrap and a
// nextTick'd callback per chunk: about a fifth of the relay's user CPU (perf, 2026-12-03). Here a
// chunk goes to handle.writeBuffer as Node's own writeGeneric sends it, with one reused request
// object while writes complete at once (nearly always: a loopback or LAN socket buffer has room).
//
// Ordering: a direct write is only made while the Writable holds nothing (writableLength 0) and is
// not corked, so it never overtakes bytes Node still has to hand to the handle. Whatever is
// written after it, by either path, goes behind it: libuv keeps one write queue per stream, and
// uv_try_write gives up while that queue holds anything. Shutdown (socket.end) is likewise done
// after pending writes.

import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { getSystemErrorName } from 'node:util';

/** The chunk's memory is still referenced by a pending write: read the next chunk elsewhere. */
export const HELD = 1;
/** Stop producing until whenDrained calls back. */
export const FULL = 2;

/** The request object libuv writes are made with (node's WriteWrap); only the fields used here. */
interface WriteRequest {
  oncomplete: (status: number) => void;
  /** Keeps the chunk alive while libuv still writes from it. */
  buffer: Buffer | null;
}

interface StreamHandle {
  writeBuffer(req: WriteRequest, data: Buffer): number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

/** Node's stream_wrap binding where this Node offers it (20 does, through process.binding); undefined otherwise. */
const binding = ((): StreamWrapBinding | undefined => {
  try {
    const legacy = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    const { WriteWrap, streamBaseState, kLastWriteWasAsync } = legacy;
    if (typeof WriteWrap !== 'function' || !(streamBaseState instanceof Int32Array) || typeof kLastWriteWasAsync !== 'number') return undefined;
    return { WriteWrap, streamBaseState, kLastWriteWasAsync };
  } catch {
    return undefined;
  }
})();

/** Whether direct writes are possible on this Node at all (for tests). */
export const directWritesAvailable = binding !== undefined;

export class DirectWriter {
  /** A request not handed to libuv yet; a write that completes at once leaves it unused, for the next one. */
  private spare: WriteRequest | undefined;
  /** Direct writes libuv still holds. */
  private pending = 0;
  private onDrained: (() => void) | undefined;
  /** Whether the last FULL came from the stream path (its 'drain' ends it) rather than a pending direct write. */
  private drainByStream = false;
  /** Direct writes made (for tests). */
  direct = 0;

  private constructor(
    private readonly socket: Duplex,
    /** Unset for a socket that is never written to directly (TLS, or no binding). */
    private readonly plain: Socket | undefined,
  ) {}

  /** A writer for `socket`; a TLS or otherwise non-plain socket always takes the stream path. */
  static for(socket: Duplex): DirectWriter {
    const plain = binding !== undefined && isPlainSocket(socket) ? socket : undefined;
    return new DirectWriter(socket, plain);
  }

  /** Writes `chunk` after everything written before; returns HELD and FULL bits. */
  write(chunk: Buffer): number {
    const socket = this.plain;
    if (socket !== undefined && socket.writableLength === 0 && socket.writableCorked === 0 && socket.writable && !socket.connecting) {
      const handle = (socket as unknown as { _handle: Partial<StreamHandle> | null })._handle;
      if (handle != null && typeof handle.writeBuffer === 'function') return this.writeDirect(socket, handle as StreamHandle, chunk);
    }
    const accepted = this.socket.write(chunk);
    this.drainByStream = !accepted;
    return (this.socket.writableLength > 0 ? HELD : 0) | (accepted ? 0 : FULL);
  }

  /**
   * Calls `callback` once the writes that made write() return FULL are done: the stream's
   * 'drain', or the completion of the pending direct writes. Not called if the socket fails
   * first (as 'drain' is not), since then the session is closing anyway.
   */
  whenDrained(callback: () => void): void {
    if (this.drainByStream) {
      this.socket.once('drain', callback);
    } else if (this.pending > 0) {
      this.onDrained = callback;
    } else {
      process.nextTick(callback);
    }
  }

  private writeDirect(socket: Socket, handle: StreamHandle, chunk: Buffer): number {
    const { streamBaseState, kLastWriteWasAsync } = binding!;
    const req = this.spare ?? this.newRequest();
    const err = handle.writeBuffer(req, chunk);
    this.direct++;
    if (err !== 0) {
      // As a failed stream write does: the socket is destroyed with the error (partly written
      // bytes cannot be taken back, so writing again by the stream path is no option).
      this.spare = undefined;
      socket.destroy(writeError(err));
      return 0;
    }
    if (streamBaseState[kLastWriteWasAsync] === 0) return 0;
    // The socket buffer is full: libuv writes the rest when it has room, straight from the chunk.
    this.spare = undefined;
    req.buffer = chunk;
    this.pending++;
    this.drainByStream = false;
    return HELD | FULL;
  }

  private newRequest(): WriteRequest {
    const req = new binding!.WriteWrap();
    req.buffer = null;
    req.oncomplete = (status: number): void => this.completed(req, status);
    this.spare = req;
    return req;
  }

  private completed(req: WriteRequest, status: number): void {
    req.buffer = null;
    this.pending--;
    const socket = this.plain!;
    if (socket.destroyed) return;
    if (status < 0) {
      socket.destroy(writeError(status));
      return;
    }
    if (this.pending === 0 && this.onDrained !== undefined) {
      const callback = this.onDrained;
      this.onDrained = undefined;
      callback();
    }
  }
}

function isPlainSocket(socket: Duplex): socket is Socket {
  // A TLSSocket is a Socket too, but its handle takes plaintext through its own write path.
  return socket instanceof Socket && (socket as Socket & { encrypted?: boolean }).encrypted !== true;
}

/** The error a failed write destroys the socket with, shaped like Node's own (code, errno, syscall). */
function writeError(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  const err: NodeJS.ErrnoException = new Error(`write ${code}`);
  err.code = code;
  err.errno = status;
  err.syscall = 'write';
  return err;
}
