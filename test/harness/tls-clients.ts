// TLS clients for the client-facing TLS tests: direct TLS (PostgreSQL 17's sslnegotiation=direct) and SSLRequest, raw or with a startup.

import { once } from 'node:events';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { SSL_REQUEST_CODE } from '../../src/protocol/codes';
import { startupMessage } from '../../src/protocol/startup';
import { rawConnect, simpleQuery, splitMessages, type BackendMessage } from './clients';

export function sslRequest(): Buffer {
  const out = Buffer.alloc(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(SSL_REQUEST_CODE, 4);
  return out;
}

export type Negotiation = 'direct' | 'sslrequest';

/** How a TLS attempt ended: established (with what was negotiated), or failed with the client's error. */
export type TlsOutcome =
  | { established: true; socket: TLSSocket; alpn: string | false; serial: string; fingerprint256: string }
  | { established: false; error: string };

/**
 * Opens a TLS connection to `port`, directly or after an SSLRequest ('S' expected), and waits
 * for the handshake. `options` are tls.connect's (ALPNProtocols, cert, key, ca...).
 */
export async function openTls(port: number, negotiation: Negotiation, options: ConnectionOptions = {}): Promise<TlsOutcome> {
  const raw = await rawConnect(port);
  if (negotiation === 'sslrequest') {
    raw.socket.write(sslRequest());
    const answer = (await raw.waitForBytes(1)).toString('latin1');
    if (answer !== 'S') {
      raw.socket.destroy();
      return { established: false, error: `SSLRequest answered ${JSON.stringify(answer)}` };
    }
    // rawConnect's listener would take the TLS records too.
    raw.socket.removeAllListeners('data');
  }
  const socket = tlsConnect({ socket: raw.socket, rejectUnauthorized: false, ...options });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed during the handshake')));
    });
  } catch (err) {
    socket.destroy();
    return { established: false, error: (err as Error).message };
  }
  socket.on('error', () => undefined);
  const peer = socket.getPeerX509Certificate();
  return { established: true, socket, alpn: socket.alpnProtocol ?? false, serial: peer?.serialNumber ?? '', fingerprint256: peer?.fingerprint256 ?? '' };
}

/** A conversation over an established TLS socket: everything received, and waits on it. */
export interface TlsConversation {
  waitForMessage(type: string, timeoutMs?: number): Promise<BackendMessage>;
  /** Resolves when the server closes the connection, with every byte it sent (decrypted). */
  closed: Promise<Buffer>;
  received(): Buffer;
}

export function converse(socket: TLSSocket): TlsConversation {
  const chunks: Buffer[] = [];
  const received = (): Buffer => Buffer.concat(chunks);
  socket.on('data', (d: Buffer) => chunks.push(d));
  const closed = once(socket, 'close').then(() => received());
  return {
    received,
    closed,
    waitForMessage: async (type, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = splitMessages(received()).find((m) => m.type === type);
        if (found !== undefined) return found;
        if (socket.destroyed || Date.now() > deadline) throw new Error(`no '${type}' message; received ${received().length} bytes`);
        await Promise.race([once(socket, 'data'), once(socket, 'close'), new Promise((r) => setTimeout(r, 100))]);
      }
    },
  };
}

/** Logs in as `user` over an established TLS socket and runs `select <n>`: the DataRow's value. */
export async function startupAndSelect(socket: TLSSocket, n: number, user = 'postgres'): Promise<string> {
  const conversation = converse(socket);
  socket.write(startupMessage({ user, database: 'postgres' }));
  await conversation.waitForMessage('Z');
  const before = conversation.received().length;
  socket.write(simpleQuery(`select ${n}`));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const messages = splitMessages(conversation.received().subarray(before));
    const row = messages.find((m) => m.type === 'D');
    if (row !== undefined && messages.some((m) => m.type === 'Z')) {
      const length = row.body.readInt32BE(2);
      return row.body.toString('utf8', 6, 6 + length);
    }
    if (socket.destroyed || Date.now() > deadline) throw new Error(`no answer to select ${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
