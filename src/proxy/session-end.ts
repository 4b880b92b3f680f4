// How a session's sockets are closed: a FATAL ErrorResponse for the client (or nothing, where PostgreSQL says nothing), a Terminate for the server, and no socket kept forever.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { refusalReply } from '../protocol/error-response';
import type { Refusal } from '../protocol/refusal';

const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]); // 'X'
/** How long a client that sends nothing waits for the FATAL after its session is closed at a boundary. */
const FATAL_DELAY_MS = 200;
/** How long a peer has to read its last bytes. */
const LINGER_MS = 5000;

/**
 * The client's last message is a FATAL ErrorResponse, unless it can no longer be written. A
 * silent refusal closes at once, as PostgreSQL's backend exits: nothing is left to read.
 */
export function endWithError(client: Duplex, refusal: Refusal): void {
  if (client.destroyed || !client.writable || refusal.silent === true) return void client.destroy();
  client.end(refusalReply(refusal));
  lingerThenDestroy(client);
}

/**
 * As endWithError, for a client that is not waiting for an answer. node-postgres turns an
 * ErrorResponse read with no query running into an 'error' event, which a pool client still
 * checked out has no listener for: read in the same chunk as the last ReadyForQuery, before the
 * release that follows it, the FATAL would crash the application. So it goes out a moment later,
 * or at once as the answer to anything the client sends meanwhile.
 */
export function endWithErrorSoon(client: Duplex, refusal: Refusal): void {
  const tell = (): void => {
    clearTimeout(timer);
    client.removeListener('data', tell);
    endWithError(client, refusal);
  };
  const timer = setTimeout(tell, FATAL_DELAY_MS);
  client.on('data', tell);
}

/** A server at a transaction boundary is told Terminate, so its backend ends cleanly instead of seeing EOF. */
export function terminateServer(server: Socket): void {
  server.end(TERMINATE);
  lingerThenDestroy(server);
}

/**
 * A peer that never reads its last bytes must not keep the socket forever. The timer goes as
 * soon as the socket closes: pending, it would hold the socket, and through its listeners the
 * whole session with its 64 kB read buffer, for LINGER_MS after the session ended.
 */
export function lingerThenDestroy(socket: Duplex): void {
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('close', () => clearTimeout(timer));
}
