// Forces a full GC in pgfloat and reads its live heap, through the V8 inspector (pgfloat started with --inspect on 127.0.0.1).
//
// Without it, "heap used" includes whatever garbage the last GC left, which is as large as the
// growth a short run is looking for. The inspector speaks JSON over a WebSocket; the few frames
// needed (one masked text frame out, unmasked text frames in) are written here rather than
// adding a dependency to the project.

import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { getJson } from './http-get';

export interface LiveHeap {
  at: number;
  /** V8 heap in use right after a full, compacting GC: live objects only. */
  usedBytes: number;
  totalBytes: number;
  /** How long the GC (plus the round trip) took. */
  gcMs: number;
}

function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126 && len < 65536) {
    head[0] = 0x81;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else if (len >= 65536) {
    head[0] = 0x81;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([head, mask, masked]);
}

export class HeapProbe {
  private nextId = 1;
  private readonly waiting = new Map<number, (result: Record<string, unknown>) => void>();

  private constructor(
    private readonly socket: Socket,
    private buffered: Buffer,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => undefined);
  }

  /** Finds the inspector's WebSocket URL on 127.0.0.1:port and connects to it. */
  static async connect(port: number, timeoutMs = 10_000): Promise<HeapProbe> {
    const deadline = Date.now() + timeoutMs;
    let targets: Array<{ webSocketDebuggerUrl?: string }> = [];
    while (targets.length === 0) {
      targets = await getJson<Array<{ webSocketDebuggerUrl?: string }>>(`http://127.0.0.1:${port}/json/list`).catch(() => []);
      if (targets.length === 0 && Date.now() > deadline) throw new Error(`no inspector answering on 127.0.0.1:${port}`);
      if (targets.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    const url = new URL(targets[0]!.webSocketDebuggerUrl!);
    const socket = connect(Number(url.port), url.hostname);
    const early = await new Promise<Buffer>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => {
        const key = randomBytes(16).toString('base64');
        socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
      let head = '';
      const onData = (chunk: Buffer): void => {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`inspector refused the WebSocket: ${head.split('\r\n')[0]}`));
        // Whatever followed the handshake in the same chunk is the start of the first frame.
        resolve(Buffer.from(head.slice(end + 4), 'latin1'));
      };
      socket.on('data', onData);
    });
    return new HeapProbe(socket, early);
  }

  /** A full GC, then the heap figures. */
  async liveHeap(): Promise<LiveHeap> {
    const started = Date.now();
    await this.call('HeapProfiler.collectGarbage');
    const usage = await this.call('Runtime.getHeapUsage');
    return { at: started, usedBytes: Number(usage.usedSize), totalBytes: Number(usage.totalSize), gcMs: Date.now() - started };
  }

  close(): void {
    this.socket.destroy();
  }

  private call(method: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`inspector: no answer to ${method} within 30 s`));
      }, 30_000);
      this.waiting.set(id, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
      this.socket.write(frame(JSON.stringify({ id, method })));
    });
  }

  /** Server frames are unmasked; control frames (ping, close) are ignored: the probe lives as long as the run. */
  private receive(chunk: Buffer): void {
    let buf = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    for (;;) {
      if (buf.length < 2) break;
      let len = buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) break;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (buf.length < 10) break;
        len = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      if (buf.length < at + len) break;
      const opcode = buf[0]! & 0x0f;
      if (opcode === 0x1) {
        const message = JSON.parse(buf.subarray(at, at + len).toString()) as { id?: number; result?: Record<string, unknown> };
        if (message.id !== undefined) {
          this.waiting.get(message.id)?.(message.result ?? {});
          this.waiting.delete(message.id);
        }
      }
      buf = buf.subarray(at + len);
    }
    this.buffered = Buffer.from(buf);
  }
}
