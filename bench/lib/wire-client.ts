// A raw-socket PostgreSQL connection for load generators and latency timing: trust auth, simple Query protocol, results skipped unread.

import { connect, type Socket } from 'node:net';
import { terminateMessage } from '../../src/protocol/client-messages';
import { errorMessageOf, MessageScanner, MessageType } from '../../src/protocol/message-scanner';
import { startupMessage } from '../../src/protocol/startup';

const TERMINATE = terminateMessage();
/** Only these bodies are copied out of the stream; rows and the rest are skipped by length. */
const WATCHED = new Set<number>([MessageType.readyForQuery, MessageType.errorResponse, MessageType.authentication]);

/** The fields of an ErrorResponse that a load generator reports. */
export interface ServerError {
  code: string;
  message: string;
}

/** What ended a query: its ReadyForQuery (with the error it reported, if any). */
export interface QueryOutcome {
  error: ServerError | undefined;
}

/**
 * One connection. Queries are sequential: `query()` must not be called again before the previous
 * one settled. The scanner copies only the few bodies it watches, so the generator spends little
 * CPU per round trip and the proxy stays the thing measured.
 */
export class WireConnection {
  private readonly scanner = new MessageScanner(WATCHED, (type, body) => this.onMessage(type, body));
  private waiting: { resolve: (o: QueryOutcome) => void; reject: (e: Error) => void } | undefined;
  private lastError: ServerError | undefined;
  private closedWith: Error | undefined;
  /** Called once when the connection ends for any reason other than `terminate()`. */
  onLost: (reason: string) => void = () => undefined;
  private terminated = false;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => this.lose(err.message));
    socket.on('close', () => this.lose('connection closed'));
  }

  /** Connects and completes the startup handshake (until the first ReadyForQuery). */
  static open(port: number, applicationName: string, timeoutMs: number): Promise<WireConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no ReadyForQuery within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        const conn = new WireConnection(socket);
        conn.waiting = {
          resolve: (o) => {
            clearTimeout(timer);
            if (o.error) {
              socket.destroy();
              reject(new Error(`${o.error.code} ${o.error.message}`));
            } else resolve(conn);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        };
        socket.write(startupMessage({ user: 'postgres', database: 'postgres', application_name: applicationName }));
      });
    });
  }

  get open(): boolean {
    return this.closedWith === undefined;
  }

  /** Sends a prepared Query message (queryMessage()); resolves at ReadyForQuery, rejects if the connection ends first. */
  query(message: Buffer): Promise<QueryOutcome> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(message);
    });
  }

  /** Sends Terminate and half-closes; resolves once the socket is closed. */
  terminate(): Promise<void> {
    this.terminated = true;
    if (this.closedWith) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end(TERMINATE);
    });
  }

  private lose(reason: string): void {
    if (this.closedWith) return;
    // An error with no ReadyForQuery after it was the FATAL that ended the session: it says more than "connection closed".
    const why = this.lastError ? `FATAL ${this.lastError.code} ${this.lastError.message}` : reason;
    this.closedWith = new Error(why);
    this.socket.destroy();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(this.closedWith);
    if (!this.terminated) this.onLost(why);
  }

  private receive(chunk: Buffer): void {
    try {
      this.scanner.push(chunk);
    } catch (err) {
      this.lose(`unreadable answer: ${(err as Error).message}`);
    }
  }

  private onMessage(type: number, body: Buffer): void {
    if (type === MessageType.readyForQuery) {
      const waiting = this.waiting;
      this.waiting = undefined;
      const error = this.lastError;
      this.lastError = undefined;
      waiting?.resolve({ error });
    } else if (type === MessageType.errorResponse) {
      const { code = '', message = '' } = errorMessageOf(body);
      this.lastError = { code, message };
    } else if (body.readInt32BE(0) !== 0) {
      this.lose(`authentication method ${body.readInt32BE(0)} requested; this client supports trust only`);
    }
  }
}
