// Logs in to a server on a plain socket with ServerLogin (no password, only a LoginSecret) and runs simple queries on it.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { LoginSecret } from '../../src/auth/login-secret';
import { ServerLogin, type LoggedIn } from '../../src/auth/server-login';
import { queryMessage } from '../../src/protocol/client-messages';
import type { Teardown } from './cluster';
import { parseErrorResponse, splitMessages } from './clients';

export interface DirectSession {
  socket: Socket;
  loggedIn: LoggedIn;
}

/** Connects to host:port and runs ServerLogin to ReadyForQuery; rejects with its LoginError. The teardown closes the socket. */
export async function logInDirectly(t: Teardown, port: number, startupPacket: Buffer, secret: LoginSecret, host = '127.0.0.1'): Promise<DirectSession> {
  const socket = connect({ port, host, noDelay: true });
  t.teardown(() => socket.destroy());
  await once(socket, 'connect');
  const login = new ServerLogin(startupPacket, secret);
  return new Promise<DirectSession>((resolve, reject) => {
    const finish = (outcome: () => void): void => {
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      outcome();
    };
    const onData = (chunk: Buffer): void => {
      try {
        const { send, done } = login.feed(chunk);
        if (send.length > 0) socket.write(send);
        if (done) finish(() => resolve({ socket, loggedIn: done }));
      } catch (err) {
        socket.destroy();
        finish(() => reject(err));
      }
    };
    const onClose = (): void => finish(() => reject(new Error('the server closed the connection during the login')));
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => undefined);
    socket.write(login.start());
  });
}

/** Sends one simple Query and returns its rows as text (null for NULL); rejects with the server's message on an ErrorResponse. */
export async function simpleQueryRows(session: DirectSession, sql: string): Promise<Array<Array<string | null>>> {
  const { socket } = session;
  let received: Buffer = session.loggedIn.rest;
  session.loggedIn.rest = Buffer.alloc(0);
  socket.write(queryMessage(sql));
  for (;;) {
    const messages = splitMessages(received);
    const ready = messages.findIndex((m) => m.type === 'Z');
    if (ready !== -1) {
      const error = messages.find((m) => m.type === 'E');
      if (error) throw Object.assign(new Error(parseErrorResponse(error.body).message), { code: parseErrorResponse(error.body).code });
      return messages.filter((m) => m.type === 'D').map((m) => dataRowTexts(m.body));
    }
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    received = Buffer.concat([received, chunk]);
  }
}

/** DataRow: int16 column count, then per column an int32 length (-1 for NULL) and the bytes. */
function dataRowTexts(body: Buffer): Array<string | null> {
  const columns: Array<string | null> = [];
  let offset = 2;
  for (let i = 0; i < body.readInt16BE(0); i++) {
    const length = body.readInt32BE(offset);
    offset += 4;
    columns.push(length === -1 ? null : body.toString('utf8', offset, offset + length));
    if (length > 0) offset += length;
  }
  return columns;
}
