// Opens the TCP connection from pgfloat to a PostgreSQL server for one client session.

import { connect, type Socket } from 'node:net';
import type { ServerToClientPump } from './relay';

export interface ServerAddress {
  host: string;
  port: number;
}

export interface PendingConnection {
  /** The socket while it connects: destroying it abandons the attempt (`connected` then rejects). */
  socket: Socket;
  /** Resolves once connected; rejects on refusal, error, close or `connectTimeoutMs`. */
  connected: Promise<Socket>;
}

/** The socket reads straight into `pump`'s buffer (see ServerToClientPump). */
export function connectToServer(node: ServerAddress, pump: ServerToClientPump, opts: { connectTimeoutMs: number; keepaliveIdleMs: number }): PendingConnection {
  const socket = connect({
    host: node.host,
    port: node.port,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: opts.keepaliveIdleMs,
    onread: pump.onread,
  });
  socket.once('close', () => pump.release());
  const connected = new Promise<Socket>((resolve, reject) => {
    const settle = (err?: Error): void => {
      clearTimeout(timer);
      socket.removeListener('error', settle);
      socket.removeListener('close', abandoned);
      if (err === undefined) return resolve(socket);
      socket.destroy();
      reject(err);
    };
    const abandoned = (): void => settle(new Error('connection attempt abandoned'));
    const timer = setTimeout(() => settle(new Error(`connect timeout after ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
    socket.once('connect', () => settle());
    socket.once('error', settle);
    socket.once('close', abandoned);
  });
  return { socket, connected };
}
