// The client-facing listeners: accepts connections on the read-write and read-only ports and starts sessions.

import { createServer, type Server, type Socket } from 'node:net';
import type { ListenAddress } from '../config/address';
import { SqlState } from '../protocol/codes';
import { errorResponse, SSL_NOT_SUPPORTED } from '../protocol/error-response';
import { parseStartupPacket } from '../protocol/startup';
import type { ListenerKind, Refusal } from '../routing/routes';
import { ClientSession, type SessionEnvironment } from './session';

export interface ProxyServerOptions {
  listen: Partial<Record<ListenerKind, ListenAddress>>;
  maxClientConnections: number;
}

export class ProxyServer {
  private readonly servers = new Map<ListenerKind, Server>();
  private readonly addresses = new Map<ListenerKind, ListenAddress>();
  private closing = false;

  constructor(
    private readonly options: ProxyServerOptions,
    private readonly env: SessionEnvironment,
  ) {}

  async start(): Promise<void> {
    for (const [kind, address] of Object.entries(this.options.listen) as Array<[ListenerKind, ListenAddress | undefined]>) {
      if (address === undefined) continue;
      const server = createServer({ noDelay: true, pauseOnConnect: false }, (socket) => this.accept(kind, socket));
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new Error(`cannot listen on ${address.host}:${address.port} (listen.${kind}): ${err.message}`)));
        server.listen(address.port, address.host, () => resolve());
      });
      // After start-up, an accept error (EMFILE, say) must not bring the process down.
      server.on('error', (err) => this.env.log.error({ listener: kind, err: err.message }, 'listener error'));
      const bound = server.address();
      this.addresses.set(kind, typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : address);
      this.servers.set(kind, server);
      this.env.log.info({ listener: kind, address: `${address.host}:${this.addresses.get(kind)!.port}` }, 'listening');
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
    this.env.sessions.dropAll({ reason: 'shutting-down', code: SqlState.adminShutdown, message: 'terminating connection: pgfloat is shutting down' });
    await Promise.all(closed);
    this.servers.clear();
  }

  private accept(kind: ListenerKind, socket: Socket): void {
    if (this.closing) return this.refuseWithoutSession(socket, { reason: 'shutting-down', code: SqlState.cannotConnectNow, message: 'pgfloat is shutting down' });
    if (this.env.sessions.size >= this.options.maxClientConnections) {
      const refusal: Refusal = {
        reason: 'too-many-connections',
        code: SqlState.tooManyConnections,
        message: `sorry, too many clients already (proxy.maxClientConnections = ${this.options.maxClientConnections})`,
      };
      this.env.onRefused(kind, refusal);
      return this.refuseWithoutSession(socket, refusal);
    }
    new ClientSession(socket, kind, this.env);
  }

  /**
   * Refuses a connection that gets no session, as PostgreSQL refuses when full: SSL and GSS
   * requests are declined, a CancelRequest is still forwarded, and the ErrorResponse answers the
   * startup packet (libpq does not show an error sent in reply to its SSLRequest).
   */
  private refuseWithoutSession(socket: Socket, refusal: Refusal): void {
    let pending = Buffer.alloc(0);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.end(errorResponse({ code: refusal.code, message: refusal.message }));
      setTimeout(() => socket.destroy(), 5000).unref();
    };
    const onData = (chunk: Buffer): void => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const result = parseStartupPacket(pending);
        if (result.status === 'incomplete') return;
        if (result.status === 'ok') {
          const packet = result.packet;
          pending = pending.subarray(result.length);
          if ((packet.kind === 'ssl-request' || packet.kind === 'gssenc-request') && pending.length === 0) {
            socket.write(SSL_NOT_SUPPORTED);
            continue;
          }
          if (packet.kind === 'cancel-request') {
            done = true;
            clearTimeout(timer);
            this.env.cancels.forward(packet.processId, packet.secretKey, this.env.connectTimeoutMs);
            socket.destroy();
            return;
          }
        }
        return finish();
      }
    };
    const timer = setTimeout(finish, this.env.startupTimeoutMs);
    timer.unref();
    socket.on('error', () => socket.destroy());
    socket.on('data', onData);
  }
}
