// One server connection of a client session: its node and socket, where both streams are in their transactions, and the two pumps between that server and the client.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { NodeAddress } from '../cluster/node';
import type { TransactionTracker } from '../protocol/transaction-tracker';
import type { BusyPoller } from './busy-poll';
import { ClientToServerPump, type BoundaryWatch, type RelayCounters, type ServerToClientPump } from './relay';

/** What the session hears of its server socket while the link is its own. */
export interface ServerSocketEvents {
  onError(err: Error): void;
  onClose(): void;
}

export interface LinkSetup {
  client: Duplex;
  tracker: TransactionTracker;
  counters: RelayCounters;
  busyPoller: BusyPoller | undefined;
  events: ServerSocketEvents;
  /** Sees the server's chunks before they are forwarded (see ServerToClientPump.start). */
  observe?: (chunk: Buffer) => boolean;
}

/**
 * A session relays through one link at a time: made when it sends its startup to a server, or
 * when it arrives on a new server after a move; given up when the session is routed again or
 * leaves the node to move. A closed session keeps its last one.
 */
export class ServerLink {
  readonly tracker: TransactionTracker;
  readonly clientPump: ClientToServerPump;
  private readonly onError: (err: Error) => void;
  private readonly onClose: () => void;

  /** Relays both ways from here; a client the caller paused stays paused. */
  constructor(
    readonly node: NodeAddress,
    readonly server: Socket,
    readonly serverPump: ServerToClientPump,
    setup: LinkSetup,
  ) {
    const { client, tracker, events } = setup;
    this.tracker = tracker;
    this.onError = (err) => events.onError(err);
    this.onClose = () => events.onClose();
    server.on('error', this.onError);
    server.on('close', this.onClose);
    serverPump.start(server, client, tracker, setup.observe);
    this.clientPump = new ClientToServerPump(client, server, tracker, setup.counters, setup.busyPoller);
    this.clientPump.start();
  }

  /** Nothing more is relayed either way; the server socket is left as it is. */
  stop(): void {
    this.clientPump.stop();
    this.serverPump.stop();
  }

  /**
   * Stops relaying and gives the server socket up: its errors and close no longer reach the
   * session, which is leaving it (destroyed when routed again, ended by a move).
   */
  detach(): void {
    this.stop();
    // Only the session's own: the one connectToServer added still gives the read buffer back to the pool.
    this.server.removeListener('close', this.onClose);
    this.server.removeListener('error', this.onError);
    this.server.on('error', () => undefined);
  }

  /** A drain: both pumps call `watch` at the session's next transaction boundary. */
  watchForBoundary(watch: BoundaryWatch): void {
    this.clientPump.watch = watch;
    this.serverPump.watch = watch;
  }

  /**
   * Sends client bytes the session held back (a query sent while it moved) to the server. Like
   * anything the client pump forwards, they make the session's state unknown without asking.
   */
  forward(held: Buffer): void {
    this.tracker.client(held, 0, held.length);
    this.server.write(held);
    this.clientPump.forwardedAny = true;
  }
}
