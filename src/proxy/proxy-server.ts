// The client-facing listeners: accepts connections on the read-write and read-only ports and gives them to the relay.

import { createServer, type Server, type Socket } from 'node:net';
import type { ListenAddress } from '../config/address';
import { SqlState } from '../protocol/codes';
import type { ListenerKind } from '../routing/routes';
import type { Logger } from '../log';
import { SHUTTING_DOWN, type Refusal } from '../protocol/refusal';
import { openFilesLimit, sessionsWithinLimit } from './fd-budget';
import type { RelayPlane } from './relay-plane';

export interface ProxyServerOptions {
  listen: Partial<Record<ListenerKind, ListenAddress>>;
  maxClientConnections: number;
  /** The process's open-files limit; read from /proc when not given. */
  openFilesLimit?: number;
}

export class ProxyServer {
  private readonly servers = new Map<ListenerKind, Server>();
  private readonly addresses = new Map<ListenerKind, ListenAddress>();
  private closing = false;
  /**
   * Sessions allowed at once: proxy.maxClientConnections, or fewer when the open-files limit
   * would run out first. Out of descriptors, the listener's accept fails and libuv closes the
   * connection without a word; refusing before that keeps the ErrorResponse and leaves
   * descriptors for the monitor and a failover.
   */
  private readonly maxSessions: number;
  private readonly limitText: string;

  constructor(
    private readonly options: ProxyServerOptions,
    private readonly relay: RelayPlane,
    private readonly log: Logger,
  ) {
    const limit = options.openFilesLimit ?? openFilesLimit();
    // Every relay loop is a process with this limit (workers inherit it), and a session's two
    // descriptors live in the loop that relays it; the control process only passes sockets on.
    const room = limit === undefined ? Infinity : sessionsWithinLimit(limit) * relay.loops;
    this.maxSessions = Math.min(options.maxClientConnections, room);
    this.limitText =
      room < options.maxClientConnections
        ? `open files limit ${limit}: room for ${room} sessions; proxy.maxClientConnections = ${options.maxClientConnections}`
        : `proxy.maxClientConnections = ${options.maxClientConnections}`;
    if (room < options.maxClientConnections) {
      // Worth a warning when it cuts deep (a default 1024 limit); a 20,000 limit against the
      // default 10,000 clients leaves 9,950, which is only worth saying.
      const level = room < options.maxClientConnections * 0.9 ? 'warn' : 'info';
      log[level](
        { openFilesLimit: limit, maxClientConnections: options.maxClientConnections, allowed: room },
        `open files limit ${limit} allows about ${room} client sessions (two descriptors each): clients beyond that are refused; raise the limit (LimitNOFILE=, ulimit -n) or lower proxy.maxClientConnections`,
      );
    }
  }

  async start(): Promise<void> {
    for (const [kind, address] of Object.entries(this.options.listen) as Array<[ListenerKind, ListenAddress | undefined]>) {
      if (address === undefined) continue;
      // A socket handed to a worker must not be read here first: its bytes would stay in this process.
      const server = createServer({ noDelay: true, pauseOnConnect: this.relay.handsOff }, (socket) => this.accept(kind, socket));
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new Error(`cannot listen on ${address.host}:${address.port} (listen.${kind}): ${err.message}`)));
        server.listen(address.port, address.host, () => resolve());
      });
      // After start-up, an accept error (EMFILE, say) must not bring the process down.
      server.on('error', (err) => this.log.error({ listener: kind, err: err.message }, 'listener error'));
      const bound = server.address();
      this.addresses.set(kind, typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : address);
      this.servers.set(kind, server);
      this.log.info({ listener: kind, address: `${address.host}:${this.addresses.get(kind)!.port}` }, 'listening');
    }
  }

  /** The bound address of a listener (its real port when configured with port 0). */
  address(kind: ListenerKind): ListenAddress | undefined {
    return this.addresses.get(kind);
  }

  /** Stops accepting and ends every session. */
  async stop(): Promise<void> {
    this.closing = true;
    const closed = [...this.servers.values()].map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await this.relay.stop({ reason: 'shutting-down', code: SqlState.adminShutdown, message: 'terminating connection: pgfloat is shutting down' });
    await Promise.all(closed);
    this.servers.clear();
  }

  private accept(kind: ListenerKind, socket: Socket): void {
    // A refused client still goes through the startup handshake, as PostgreSQL's do when full:
    // SSL is negotiated, a CancelRequest is forwarded, and the ErrorResponse answers the startup
    // packet (libpq does not show an error sent in reply to its SSLRequest).
    let refusal: Refusal | undefined;
    if (this.closing) {
      refusal = SHUTTING_DOWN;
    } else if (this.relay.open() >= this.maxSessions) {
      refusal = {
        reason: 'too-many-connections',
        code: SqlState.tooManyConnections,
        message: `sorry, too many clients already (${this.limitText})`,
      };
    }
    this.relay.start(kind, socket, refusal);
  }
}
