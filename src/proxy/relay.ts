// The hot path: moves bytes between a client and its server with backpressure and no parsing.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { BusyPoller } from './busy-poll';

export interface RelayCounters {
  clientToServerBytes: number;
  serverToClientBytes: number;
}

const READ_BUFFER_SIZE = 64 * 1024;

/**
 * Client to server. Accepted sockets cannot take an `onread` buffer, so this side uses
 * 'data' events; the client's half is the small one (queries), the server's carries results.
 */
export function forwardClientToServer(
  client: Duplex,
  server: Duplex,
  counters: RelayCounters,
  busyPoller: BusyPoller | undefined,
): void {
  let waitingForDrain = false;
  const resume = (): void => {
    waitingForDrain = false;
    client.resume();
  };
  client.on('data', (chunk: Buffer) => {
    counters.clientToServerBytes += chunk.length;
    busyPoller?.kick();
    if (!server.write(chunk) && !waitingForDrain) {
      // The server reads slower than the client sends: stop reading until it catches up,
      // so memory stays bounded by one socket buffer per direction.
      waitingForDrain = true;
      client.pause();
      server.once('drain', resume);
    }
  });
}

/**
 * Server to client. The server socket reads straight into a reused buffer (net.connect's
 * `onread`), which skips the readable-stream machinery and an allocation per chunk. The buffer
 * is reused only when the client took the whole chunk synchronously; otherwise the pending
 * write still points into it and the next read gets a fresh one.
 */
export class ServerToClientPump {
  private buffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  private client: Duplex | undefined;
  private server: Socket | undefined;
  private waitingForDrain = false;
  /** Sees each chunk before it is forwarded while set; dropped once it returns false. */
  private observe: ((chunk: Buffer) => boolean) | undefined;

  constructor(private readonly counters: RelayCounters) {}

  /** Pass as `onread` to net.connect. */
  readonly onread = {
    buffer: (): Buffer => this.buffer,
    callback: (nread: number, buffer: Buffer): boolean => this.onChunk(buffer.subarray(0, nread)),
  };

  start(server: Socket, client: Duplex, observe?: (chunk: Buffer) => boolean): void {
    this.server = server;
    this.client = client;
    this.observe = observe;
  }

  private onChunk(chunk: Buffer): boolean {
    const client = this.client;
    if (client === undefined) return true;
    if (this.observe !== undefined && !this.observe(chunk)) this.observe = undefined;
    this.counters.serverToClientBytes += chunk.length;
    const accepted = client.write(chunk);
    if (client.writableLength > 0) this.buffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
    if (accepted) return true;
    if (!this.waitingForDrain) {
      this.waitingForDrain = true;
      client.once('drain', this.resume);
    }
    return false; // pauses the server socket until the client drains
  }

  private readonly resume = (): void => {
    this.waitingForDrain = false;
    this.server?.resume();
  };
}
