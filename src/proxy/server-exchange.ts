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

/** One step of a conversation: bytes to send back, and the result once it is over. */
export interface ConversationStep<T> {
  send?: Buffer;
  done?: T;
}

/**
 * pgfloat's side of a short conversation with a server: sends `first`, then hands each chunk
 * the server sends to `take` (valid during the call only) until it returns a result. The
 * server's chunks are diverted from the client while it runs; the caller decides what the pump
 * does afterwards. Rejects when `take` throws, the server closes, or `timeoutMs` passes.
 */
export function converse<T>(server: Socket, pump: ServerToClientPump, first: Buffer, timeoutMs: number, take: (chunk: Buffer) => ConversationStep<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const finish = (err: Error | undefined, result?: T): void => {
      clearTimeout(timer);
      server.removeListener('close', closed);
      pump.divert(server, () => undefined);
      if (err === undefined) resolve(result as T);
      else reject(err);
    };
    const closed = (): void => finish(new ExchangeError('the server closed the connection'));
    const timer = setTimeout(() => finish(new ExchangeError(`no answer within ${timeoutMs} ms`)), timeoutMs);
    server.once('close', closed);
    pump.divert(server, (chunk) => {
      let step: ConversationStep<T>;
      try {
        step = take(chunk);
      } catch (err) {
        return finish(err as Error);
      }
      if (step.send !== undefined && step.send.length > 0) server.write(step.send);
      if (step.done !== undefined) finish(undefined, step.done);
    });
    server.write(first);
  });
}

/** Sends `bytes` (ending in one sync point) to the server and collects its answer up to the ReadyForQuery. */
export function exchange(server: Socket, pump: ServerToClientPump, bytes: Buffer, timeoutMs: number): Promise<ServerMessage[]> {
  const messages: ServerMessage[] = [];
  let answered = false;
  const scanner = new MessageScanner(
    EVERY_TYPE,
    (type, body) => {
      messages.push({ type, body });
      if (type === MessageType.readyForQuery) answered = true;
    },
    MAX_ANSWER_BODY,
  );
  return converse(server, pump, bytes, timeoutMs, (chunk) => {
    try {
      scanner.push(chunk);
    } catch (err) {
      throw new ExchangeError(`unreadable answer: ${(err as Error).message}`);
    }
    return answered ? { done: messages } : {};
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
