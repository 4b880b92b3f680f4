// A raw-socket PostgreSQL connection for load generators: trust auth, simple Query protocol, no result parsing.

import { connect, type Socket } from 'node:net';

const PROTOCOL_3_0 = 196608;
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

export function startupMessage(user: string, database: string, applicationName: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0application_name\0${applicationName}\0\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(PROTOCOL_3_0, 4);
  return Buffer.concat([head, body]);
}

export function queryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`);
  const head = Buffer.alloc(5);
  head.write('Q', 0);
  head.writeInt32BE(4 + text.length, 1);
  return Buffer.concat([head, text]);
}

/** The fields of an ErrorResponse that a load generator reports. */
export interface ServerError {
  severity: string;
  code: string;
  message: string;
}

function parseError(body: Buffer): ServerError {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    fields.set(String.fromCharCode(body[at]!), body.subarray(at + 1, end).toString());
    at = end + 1;
  }
  return { severity: fields.get('V') ?? fields.get('S') ?? '', code: fields.get('C') ?? '', message: fields.get('M') ?? '' };
}

/** What ended a query: its ReadyForQuery (with the error it reported, if any). */
export interface QueryOutcome {
  error: ServerError | undefined;
}

/**
 * One connection. Queries are sequential: `query()` must not be called again before the previous
 * one settled. The parser copies only when a message spans two chunks, so the generator spends
 * little CPU per round trip and the proxy stays the thing measured.
 */
export class WireConnection {
  private pending: Buffer = Buffer.alloc(0);
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
        socket.write(startupMessage('postgres', 'postgres', applicationName));
      });
    });
  }

  get open(): boolean {
    return this.closedWith === undefined;
  }

  /** Sends a prepared Query message; resolves at ReadyForQuery, rejects if the connection ends first. */
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
    // A FATAL sent before the close says more than "connection closed".
    const why = this.lastError?.severity === 'FATAL' ? `FATAL ${this.lastError.code} ${this.lastError.message}` : reason;
    this.closedWith = new Error(why);
    this.socket.destroy();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(this.closedWith);
    if (!this.terminated) this.onLost(why);
  }

  private receive(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let offset = 0;
    while (buf.length - offset >= 5) {
      const length = buf.readInt32BE(offset + 1);
      if (buf.length - offset < 1 + length) break;
      const type = buf[offset];
      if (type === 0x5a /* Z */) {
        const waiting = this.waiting;
        this.waiting = undefined;
        const error = this.lastError;
        this.lastError = undefined;
        waiting?.resolve({ error });
      } else if (type === 0x45 /* E */) {
        this.lastError = parseError(buf.subarray(offset + 5, offset + 1 + length));
      } else if (type === 0x52 /* R */ && buf.readInt32BE(offset + 5) !== 0) {
        this.lose(`authentication method ${buf.readInt32BE(offset + 5)} requested; this client supports trust only`);
        return;
      }
      offset += 1 + length;
    }
    buf = buf.subarray(offset);
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
  }
}
