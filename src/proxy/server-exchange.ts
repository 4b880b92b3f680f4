// pgfloat's own short conversations on a session's server connection (reading a session's state, restoring it), with nothing reaching the client.

import type { Socket } from 'node:net';
import { errorMessageOf, MessageScanner, MessageType } from '../protocol/message-scanner';
import type { ServerToClientPump } from './relay';

export interface ServerMessage {
  type: number;
  body: Buffer;
}

const EVERY_TYPE: ReadonlySet<number> = new Set(Array.from({ length: 256 }, (_, i) => i));
const DATA_ROW = 0x44; // 'D'
/** A session's state is small, but a few thousand prepared statements are not unheard of. */
const MAX_ANSWER_BODY = 64 * 1024 * 1024;

export class ExchangeError extends Error {
  constructor(
    message: string,
    /** The server's SQLSTATE, when it answered with an error. */
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ExchangeError';
  }
}

/**
 * Sends `bytes` (ending in one sync point) to the server and collects its answer up to the
 * ReadyForQuery. The server's chunks are diverted from the client while it runs; the caller
 * decides what the pump does afterwards.
 */
export function exchange(server: Socket, pump: ServerToClientPump, bytes: Buffer, timeoutMs: number): Promise<ServerMessage[]> {
  return new Promise((resolve, reject) => {
    const messages: ServerMessage[] = [];
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      server.removeListener('close', closed);
      pump.divert(server, () => undefined);
      if (err === undefined) resolve(messages);
      else reject(err);
    };
    const closed = (): void => finish(new ExchangeError('the server closed the connection'));
    const scanner = new MessageScanner(
      EVERY_TYPE,
      (type, body) => {
        messages.push({ type, body });
        if (type === MessageType.readyForQuery) finish();
      },
      MAX_ANSWER_BODY,
    );
    const timer = setTimeout(() => finish(new ExchangeError(`no answer within ${timeoutMs} ms`)), timeoutMs);
    server.once('close', closed);
    pump.divert(server, (chunk) => {
      try {
        scanner.push(chunk);
      } catch (err) {
        finish(new ExchangeError(`unreadable answer: ${(err as Error).message}`));
      }
    });
    server.write(bytes);
  });
}

/** The first error in an answer, as an ExchangeError; undefined when there is none. */
export function firstError(messages: readonly ServerMessage[]): ExchangeError | undefined {
  const error = messages.find((m) => m.type === MessageType.errorResponse);
  if (error === undefined) return undefined;
  const { code, message } = errorMessageOf(error.body);
  return new ExchangeError(`${message ?? 'error'} (${code ?? 'no SQLSTATE'})`, code);
}

/** The text of the first column of the first row of a one-value answer; throws the server's error if any. */
export function singleValue(messages: readonly ServerMessage[]): string {
  const error = firstError(messages);
  if (error !== undefined) throw error;
  const row = messages.find((m) => m.type === DATA_ROW);
  if (row === undefined || row.body.readInt16BE(0) < 1) throw new ExchangeError('no row in the answer');
  const length = row.body.readInt32BE(2);
  if (length < 0) throw new ExchangeError('a null value in the answer');
  return row.body.toString('utf8', 6, 6 + length);
}
