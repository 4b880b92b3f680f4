// A TCP relay on one link (pgfloat to a server, or standby to primary) that can refuse or blackhole it on command.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Teardown } from './cluster';

/**
 * - `pass`: bytes flow both ways.
 * - `refuse`: the port is closed (new connections are refused) and open connections are reset.
 * - `blackhole`: nothing is delivered and nothing is reset. Open connections stop moving (their
 *   bytes wait in the socket buffers, as unacknowledged packets would), new connections complete
 *   the TCP handshake (the relay's kernel answers it) and then hear nothing. A real blackhole
 *   would also drop the SYN; either way the peer only finds out by a timeout. When the link is
 *   healed (`pass`) what waited is delivered, as TCP retransmission would after a partition.
 * - `hang-up`: new connections are accepted and closed at once, before a byte, as by a server
 *   going away with connections in its listen backlog; open connections keep flowing.
 */
export type LinkMode = 'pass' | 'refuse' | 'blackhole' | 'hang-up';

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
  /** One side closed while the link was a blackhole: the other must not hear of it until it heals. */
  broken: boolean;
}

export class FaultRelay {
  private server: Server | undefined;
  private readonly pairs = new Set<Pair>();
  private current: LinkMode = 'pass';
  private listenPort = 0;

  private constructor(
    private readonly targetPort: number,
    private readonly targetHost: string,
  ) {}

  /** Relays 127.0.0.1:<port> to targetHost:targetPort; the teardown closes it. */
  static async start(t: Teardown, targetPort: number, targetHost = '127.0.0.1'): Promise<FaultRelay> {
    const relay = new FaultRelay(targetPort, targetHost);
    await relay.listen();
    t.teardown(() => relay.close());
    return relay;
  }

  get port(): number {
    return this.listenPort;
  }

  get mode(): LinkMode {
    return this.current;
  }

  /** Connections currently held open by the relay (either side). */
  get openConnections(): number {
    return this.pairs.size;
  }

  async set(mode: LinkMode): Promise<void> {
    if (mode === this.current) return;
    const previous = this.current;
    this.current = mode;
    if (mode === 'refuse') {
      const closing = this.closeListener();
      for (const pair of [...this.pairs]) this.reset(pair);
      await closing;
      return;
    }
    if (previous === 'refuse') await this.listen();
    if (mode === 'hang-up') return;
    if (mode === 'pass') for (const pair of this.pairs) this.flow(pair);
    else for (const pair of this.pairs) this.stall(pair);
  }

  async close(): Promise<void> {
    this.current = 'refuse';
    const closing = this.closeListener();
    for (const pair of [...this.pairs]) this.reset(pair);
    await closing;
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = createServer({ pauseOnConnect: true }, (client) => this.accept(client));
      server.once('error', reject);
      server.listen(this.listenPort, '127.0.0.1', () => {
        server.removeListener('error', reject);
        this.listenPort = (server.address() as { port: number }).port;
        this.server = server;
        resolve();
      });
    });
  }

  private closeListener(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    return server ? new Promise((resolve) => server.close(() => resolve())) : Promise.resolve();
  }

  private accept(client: Socket): void {
    if (this.current === 'hang-up') return void client.destroy();
    const pair: Pair = { client, upstream: undefined, broken: false };
    this.pairs.add(pair);
    client.on('error', () => undefined);
    client.on('close', () => this.drop(pair));
    if (this.current === 'pass') this.flow(pair);
  }

  /** Connects upstream on first use, then lets both sides read. */
  private flow(pair: Pair): void {
    // Once healed, the side that is still open learns the connection is gone, as from a peer's RST.
    if (pair.broken) return this.reset(pair);
    if (pair.upstream === undefined) {
      const upstream = connect({ port: this.targetPort, host: this.targetHost, noDelay: true });
      pair.upstream = upstream;
      upstream.on('error', () => undefined);
      upstream.on('close', () => this.drop(pair));
      pair.client.on('data', (chunk: Buffer) => {
        if (!upstream.write(chunk)) pair.client.pause();
      });
      upstream.on('drain', () => this.current === 'pass' && pair.client.resume());
      upstream.on('data', (chunk: Buffer) => {
        if (!pair.client.write(chunk)) upstream.pause();
      });
      pair.client.on('drain', () => this.current === 'pass' && upstream.resume());
    }
    pair.client.resume();
    pair.upstream.resume();
  }

  private stall(pair: Pair): void {
    pair.client.pause();
    pair.upstream?.pause();
  }

  private reset(pair: Pair): void {
    resetSocket(pair.client);
    if (pair.upstream) resetSocket(pair.upstream);
    this.pairs.delete(pair);
  }

  private drop(pair: Pair): void {
    if (this.current === 'blackhole') {
      pair.broken = true;
      return;
    }
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}

/**
 * An RST where one can be sent. A socket already ending (its shutdown request in flight) or not
 * yet connected is only destroyed: resetting those can leave a request Node waits for at exit
 * forever, spinning in its handle cleanup.
 */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.writableEnded || socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}
