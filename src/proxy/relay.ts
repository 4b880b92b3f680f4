// The hot path: moves bytes between a client and its server with backpressure and no parsing.

import type { Duplex } from 'node:stream';

export interface RelayCounters {
  clientToServerBytes: number;
  serverToClientBytes: number;
}

export type ChunkObserver = (chunk: Buffer) => void;

/**
 * Forwards `from` to `to`. `observe`, while set, sees each chunk before it is forwarded (the
 * session watches the server's startup messages this way) and is dropped once it returns false,
 * after which the loop is a bare write per chunk.
 */
export function forward(
  from: Duplex,
  to: Duplex,
  count: (bytes: number) => void,
  observe?: (chunk: Buffer) => boolean,
): void {
  let watcher = observe;
  let waitingForDrain = false;
  const resume = (): void => {
    waitingForDrain = false;
    from.resume();
  };
  from.on('data', (chunk: Buffer) => {
    if (watcher !== undefined && !watcher(chunk)) watcher = undefined;
    count(chunk.length);
    if (!to.write(chunk) && !waitingForDrain) {
      // The receiver is slower than the sender: stop reading until it has caught up,
      // so memory stays bounded by one socket buffer per direction.
      waitingForDrain = true;
      from.pause();
      to.once('drain', resume);
    }
  });
}
