// Opens a socket from pgfloat to a server for a relayed session or a cancel request: TCP, then the
// SSLRequest and TLS handshake its serverTls mode asks for, as libpq does.

import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { NodeAddress } from '../cluster/node';
import { SSL_REQUEST_CODE } from '../protocol/codes';
import { certificateFailure, DEFAULT_SERVER_TLS, requiresTls, tlsConnectOptions, type ServerTlsPolicy } from '../postgres/server-tls';

export interface ServerSocketOptions {
  connectTimeoutMs: number;
  keepaliveIdleMs: number;
}

/** net.connect's `onread`: a plaintext socket reads straight into the caller's buffer. */
export interface ReadInto {
  buffer: () => Buffer;
  callback: (nread: number, buffer: Buffer) => boolean;
}

export interface OpenedServerSocket {
  socket: Socket;
  /** False: the socket reads into `onread`. True: through 'data' events (TLS, or a plaintext fallback on a socket opened for TLS). */
  events: boolean;
  encrypted: boolean;
}

export interface PendingServerSocket {
  /** Destroying it abandons the attempt at any step (`opened` then rejects). */
  abandon(): void;
  /** The TCP socket while it connects (a TLS one wraps it later). */
  tcp: Socket;
  /** Resolves once the server may be sent a startup packet; rejects on refusal, failed verification, error, close or timeout. */
  opened: Promise<OpenedServerSocket>;
}

const SSL_REQUEST = ((): Buffer => {
  const packet = Buffer.alloc(8);
  packet.writeInt32BE(8, 0);
  packet.writeInt32BE(SSL_REQUEST_CODE, 4);
  return packet;
})();

/**
 * Under `prefer` (and `allow`), a server that said 'N' is asked again only after this: the
 * request costs a round trip per connection, and these modes accept plaintext anyway, so
 * skipping it loses no protection. A server that later turns ssl on is encrypted to from then.
 */
const PLAINTEXT_REMEMBERED_MS = 30_000;
const answeredPlaintext = new Map<string, number>();

/**
 * `allow` is taken as `prefer` here: libpq's plaintext-first retry would replay a client's
 * login, which pgfloat relays rather than performs. Both accept any server either accepts.
 */
function sendsSslRequest(policy: ServerTlsPolicy, key: string): boolean {
  if (policy.mode === 'disable') return false;
  if (requiresTls(policy.mode)) return true;
  const until = answeredPlaintext.get(key);
  return until === undefined || until < Date.now();
}

export function openServerSocket(node: NodeAddress, opts: ServerSocketOptions, onread?: ReadInto): PendingServerSocket {
  const policy = node.tls ?? DEFAULT_SERVER_TLS;
  const key = `${node.host}:${node.port}`;
  const negotiate = sendsSslRequest(policy, key);
  const tcp = connect({
    host: node.host,
    port: node.port,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: opts.keepaliveIdleMs,
    ...(!negotiate && onread !== undefined && { onread }),
  });
  let tls: TLSSocket | undefined;
  let settle: (err?: Error, opened?: OpenedServerSocket) => void = () => undefined;
  const opened = new Promise<OpenedServerSocket>((resolve, reject) => {
    const timer = setTimeout(() => settle(new Error(`connect timeout after ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
    const abandoned = (): void => settle(new Error('connection attempt abandoned'));
    settle = (err, result) => {
      settle = () => undefined;
      clearTimeout(timer);
      tcp.removeListener('error', settle);
      tcp.removeListener('close', abandoned);
      tls?.removeListener('close', abandoned);
      if (err === undefined) return resolve(result!);
      tls?.destroy();
      tcp.destroy();
      reject(err);
    };
    tcp.once('error', settle);
    tcp.once('close', abandoned);
    tcp.once('connect', () => {
      if (!negotiate) return settle(undefined, { socket: tcp, events: onread === undefined, encrypted: false });
      tcp.write(SSL_REQUEST);
      tcp.once('data', (answer: Buffer) => {
        if (answer.length !== 1 || (answer[0] !== 0x53 && answer[0] !== 0x4e)) {
          return settle(new Error(`the server answered the SSL request with ${JSON.stringify(answer.subarray(0, 16).toString('latin1'))}, not S or N`));
        }
        if (answer[0] === 0x4e) {
          if (requiresTls(policy.mode)) return settle(new Error(`the server does not support SSL, and serverTls.mode is ${policy.mode}`));
          answeredPlaintext.set(key, Date.now() + PLAINTEXT_REMEMBERED_MS);
          // The socket flows now; whoever reads it must listen before the startup is sent.
          tcp.pause();
          return settle(undefined, { socket: tcp, events: true, encrypted: false });
        }
        answeredPlaintext.delete(key);
        let options;
        try {
          options = tlsConnectOptions(policy, node.host);
        } catch (err) {
          return settle(err as Error); // a serverTls file that cannot be read
        }
        const secure = (tls = tlsConnect({ ...options, socket: tcp }));
        secure.once('close', abandoned);
        secure.once('error', (err) => settle(new Error(certificateFailure(err, policy) ?? `TLS handshake failed: ${err.message}`)));
        secure.once('secureConnect', () => {
          // The TLS socket reports the connection's errors from now on; the TCP one must not throw them unheard.
          tcp.on('error', () => undefined);
          settle(undefined, { socket: secure, events: true, encrypted: true });
        });
      });
    });
  });
  return {
    tcp,
    abandon: () => {
      tls?.destroy();
      tcp.destroy();
    },
    opened,
  };
}
