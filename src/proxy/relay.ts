// The hot path: moves bytes between a client and its server with backpressure, only walking message headers.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TransactionTracker } from '../protocol/transaction-tracker';
import type { BusyPoller } from './busy-poll';
import { armGenerator, bufferGeneratorSlot, ClientReader, nextBufferOnce, viewOf, type ChunkView } from './client-reader';
import { DirectWriter, FULL, HELD } from './direct-write';
import { giveBackReadBuffer, takeReadBuffer } from './read-buffers';

/** Read into after release: libuv fails a read into an empty buffer (ENOBUFS) rather than write anywhere. */
const NO_BUFFER = Buffer.alloc(0);

export interface RelayCounters {
  clientToServerBytes: number;
  serverToClientBytes: number;
}

/**
 * Set on both pumps while a session drains: calls `onIdle` at its first transaction boundary,
 * right after the chunk that reached it is forwarded, or before a client chunk that finds the
 * session idle (that chunk is then not forwarded: `onIdle` gets it, valid during the call only,
 * and the client is waiting for an answer).
 */
export class BoundaryWatch {
  constructor(
    private readonly tracker: TransactionTracker,
    private readonly onIdle: (unforwarded: Buffer | undefined) => void,
  ) {}

  /** False keeps the chunk from the server. */
  admitClientChunk(chunk: Buffer): boolean {
    if (!this.tracker.idle()) return true;
    this.onIdle(chunk);
    return false;
  }

  afterChunk(): void {
    if (this.tracker.idle()) this.onIdle(undefined);
  }
}

/**
 * Client to server. A plain-TCP client is read into a reused buffer (ClientReader); a TLS one,
 * or one that could not be adopted, through 'data' events. The client's half is the small one
 * (queries), the server's carries results.
 */
export class ClientToServerPump {
  private waitingForDrain = false;
  private reader: ClientReader | undefined;
  private readonly writer: DirectWriter;
  watch: BoundaryWatch | undefined;
  /** Sees each chunk before it is forwarded while set (the authentication, for a later move). */
  observe: ((chunk: Buffer) => void) | undefined;
  /** Whether any client byte has gone to the server through this pump (since the startup, once the session is established). */
  forwardedAny = false;

  constructor(
    private readonly client: Duplex,
    server: Duplex,
    private readonly tracker: TransactionTracker,
    private readonly counters: RelayCounters,
    private readonly busyPoller: BusyPoller | undefined,
  ) {
    this.writer = DirectWriter.for(server);
  }

  start(): void {
    const reader = (this.reader = ClientReader.of(this.client));
    if (reader !== undefined) reader.sink = this.onData;
    else this.client.on('data', this.onData);
  }

  /** Nothing more is forwarded: the session is closing. */
  stop(): void {
    // A pump started later on the same socket (the session routed again) keeps its own sink.
    if (this.reader !== undefined) {
      if (this.reader.sink === this.onData) this.reader.sink = undefined;
    } else this.client.removeListener('data', this.onData);
    this.watch = undefined;
    this.observe = undefined;
  }

  private readonly onData = (chunk: Buffer): void => {
    const watch = this.watch;
    if (watch !== undefined && !watch.admitClientChunk(chunk)) return;
    this.observe?.(chunk);
    this.counters.clientToServerBytes += chunk.length;
    this.forwardedAny = true;
    this.busyPoller?.kick();
    this.tracker.client(chunk, 0, chunk.length);
    const outcome = this.writer.write(chunk);
    // The pending write still points into the reader's buffer.
    if (this.reader !== undefined && (outcome & HELD) !== 0) this.reader.keepLastChunk();
    if (watch !== undefined) {
      watch.afterChunk();
      if (this.watch === undefined) return; // the session closed
    }
    if ((outcome & FULL) !== 0 && !this.waitingForDrain) {
      // The server reads slower than the client sends: stop reading until it catches up,
      // so memory stays bounded by one socket buffer per direction.
      this.waitingForDrain = true;
      this.client.pause();
      this.writer.whenDrained(this.resume);
    }
  };

  private readonly resume = (): void => {
    this.waitingForDrain = false;
    this.client.resume();
  };
}

/**
 * Server to client. The server socket reads straight into a reused buffer (net.connect's
 * `onread`), which skips the readable-stream machinery and an allocation per chunk. The buffer
 * is reused only when the client took the whole chunk synchronously; otherwise the pending
 * write still points into it and the next read gets a fresh one.
 */
export class ServerToClientPump {
  private buffer = takeReadBuffer();
  private readonly view: ChunkView = { source: NO_BUFFER, chunk: NO_BUFFER };
  /** Where the server socket keeps its buffer generator, unset between buffer changes; undefined if not found. */
  private generatorSlot: symbol | undefined;
  private client: Duplex | undefined;
  private writer: DirectWriter | undefined;
  private server: Socket | undefined;
  private tracker: TransactionTracker | undefined;
  private waitingForDrain = false;
  /** Set when the server socket is read through 'data' events (TLS): each chunk is its own, nothing to swap. */
  private events: Socket | undefined;
  /** Sees each chunk before it is forwarded while set; dropped once it returns false. */
  private observe: ((chunk: Buffer) => boolean) | undefined;
  watch: BoundaryWatch | undefined;

  constructor(private readonly counters: RelayCounters) {}

  /** Pass as `onread` to net.connect. */
  readonly onread = {
    buffer: (): Buffer => this.buffer,
    callback: (nread: number, buffer: Buffer): boolean => this.onChunk(viewOf(this.view, buffer, nread)),
  };

  /** For a server socket read through 'data' events rather than `onread` (a TLS one); it may be paused. */
  readEvents(server: Socket): void {
    this.events = server;
    server.on('data', this.onDataEvent);
    server.resume();
  }

  private readonly onDataEvent = (chunk: Buffer): void => {
    if (!this.onChunk(chunk)) this.events?.pause();
  };

  private readonly nextBuffer = (): Buffer => nextBufferOnce(this.server!, this.generatorSlot!, this.buffer);

  start(server: Socket, client: Duplex, tracker: TransactionTracker, observe?: (chunk: Buffer) => boolean): void {
    this.adopt(server);
    this.client = client;
    this.writer = DirectWriter.for(client);
    this.tracker = tracker;
    this.observe = observe;
  }

  /** From the next chunk on, `observe` sees each chunk before it is forwarded, until it returns false. */
  observeWith(observe: (chunk: Buffer) => boolean): void {
    this.observe = observe;
  }

  /**
   * The server's chunks go to `observe` only, none to the client: pgfloat talks to the server
   * itself (a session's state read before it moves, the login and restore on its new server).
   * `observe` gets each chunk during the call only.
   */
  divert(server: Socket, observe: (chunk: Buffer) => void): void {
    this.adopt(server);
    this.client = undefined;
    this.watch = undefined;
    this.observe = (chunk) => {
      observe(chunk);
      return true;
    };
  }

  private adopt(server: Socket): void {
    if (this.server === server) return;
    this.server = server;
    if (this.events === server) return;
    // The handle has its first buffer: Node need not ask for one after every read, only after a change.
    this.generatorSlot = bufferGeneratorSlot(server);
    if (this.generatorSlot !== undefined) (server as unknown as Record<symbol, unknown>)[this.generatorSlot] = null;
  }

  /** Nothing more is forwarded: the session is closing. */
  stop(): void {
    this.client = undefined;
    this.watch = undefined;
    this.observe = undefined;
  }

  /**
   * The server socket has closed and reads no more: the buffer goes back to the pool. It is never
   * one a pending client write points into (those were swapped out in onChunk).
   */
  release(): void {
    if (this.buffer === NO_BUFFER) return;
    giveBackReadBuffer(this.buffer);
    this.buffer = NO_BUFFER;
  }

  private onChunk(chunk: Buffer): boolean {
    if (this.observe !== undefined && !this.observe(chunk)) this.observe = undefined;
    // Read after the observer, which may have stopped the pump (the session went elsewhere).
    if (this.client === undefined) return true;
    this.tracker!.server(chunk, 0, chunk.length);
    this.counters.serverToClientBytes += chunk.length;
    const writer = this.writer!;
    const outcome = writer.write(chunk);
    if ((outcome & HELD) !== 0 && this.events === undefined) {
      this.buffer = takeReadBuffer();
      if (this.generatorSlot !== undefined) armGenerator(this.server!, this.generatorSlot, this.nextBuffer);
    }
    // Synchronously after the forward, so no client byte can be forwarded in between.
    if (this.watch !== undefined) this.watch.afterChunk();
    if ((outcome & FULL) === 0 || this.client === undefined) return true;
    if (!this.waitingForDrain) {
      this.waitingForDrain = true;
      writer.whenDrained(this.resume);
    }
    return false; // pauses the server socket until the client drains
  }

  private readonly resume = (): void => {
    this.waitingForDrain = false;
    this.server?.resume();
  };
}
