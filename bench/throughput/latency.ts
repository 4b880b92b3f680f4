// A minimal raw-socket PostgreSQL client that times `select 1` round trips (simple Query protocol, trust auth only).

import { connect, type Socket } from 'node:net';

const PROTOCOL_3_0 = 196608;

function startupMessage(user: string, database: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(PROTOCOL_3_0, 4);
  return Buffer.concat([head, body]);
}

function queryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`);
  const head = Buffer.alloc(5);
  head.write('Q', 0);
  head.writeInt32BE(4 + text.length, 1);
  return Buffer.concat([head, text]);
}

/**
 * One connection; calls `onReady` at every ReadyForQuery. The parser copies nothing in the
 * common case (a whole response in one chunk), so the client adds little to each round trip.
 */
class RawConnection {
  private pending: Buffer = Buffer.alloc(0);
  onReady: () => void = () => undefined;
  onError: (err: Error) => void = () => undefined;

  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => this.onError(err));
    socket.on('close', () => this.onError(new Error('connection closed')));
  }

  private receive(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let offset = 0;
    while (buf.length - offset >= 5) {
      const length = buf.readInt32BE(offset + 1);
      if (buf.length - offset < 1 + length) break;
      const type = buf[offset];
      if (type === 0x5a /* Z */) {
        this.onReady();
      } else if (type === 0x45 /* E */) {
        this.onError(new Error(`server error: ${buf.subarray(offset + 5, offset + 1 + length).toString().replace(/\0/g, ' ').trim()}`));
      } else if (type === 0x52 /* R */ && buf.readInt32BE(offset + 5) !== 0) {
        this.onError(new Error(`authentication method ${buf.readInt32BE(offset + 5)} requested; the latency client supports trust only`));
      }
      offset += 1 + length;
    }
    buf = buf.subarray(offset);
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
  }
}

function open(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      const conn = new RawConnection(socket);
      conn.onError = reject;
      conn.onReady = () => resolve(conn);
      socket.write(startupMessage('postgres', 'postgres'));
    });
  });
}

/** Round-trip times in microseconds of `count` sequential `select 1`, after `warmup` untimed ones. */
export async function measureLatency(port: number, count: number, warmup = 1000): Promise<Float64Array> {
  const conn = await open(port);
  const query = queryMessage('select 1');
  const samples = new Float64Array(count);
  try {
    await new Promise<void>((resolve, reject) => {
      let done = -Math.max(1, warmup);
      let started = 0n;
      conn.onError = reject;
      conn.onReady = () => {
        const now = process.hrtime.bigint();
        if (done >= 0) samples[done] = Number(now - started) / 1000;
        if (++done >= count) return resolve();
        started = process.hrtime.bigint();
        conn.socket.write(query);
      };
      conn.onReady(); // sends the first query; the warm-up absorbs this bogus first "sample"
    });
  } finally {
    conn.onError = () => undefined;
    conn.socket.end(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate
  }
  return samples;
}

/** Nearest-rank percentile of samples sorted ascending. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
