// Real-client helpers for the integration tests: pg clients, psql/pgbench runs, raw sockets and ErrorResponse parsing.

import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { Client, type ClientConfig } from 'pg';
import { cancelRequest } from '../../src/protocol/startup';
import { message } from './wire';

export type ObservedClient = Client & {
  /** Every 'error' event the client emitted (a server FATAL is followed by "Connection terminated unexpectedly"). */
  errors: Array<Error & { code?: string }>;
};

/** A connected pg client that never turns a server-side disconnect into an uncaught exception. */
export async function connectClient(config: string | ClientConfig): Promise<ObservedClient> {
  const client = new Client(typeof config === 'string' ? { connectionString: config } : config) as ObservedClient;
  client.errors = [];
  client.on('error', (err) => client.errors.push(err));
  await client.connect();
  return client;
}

/** Runs one statement on a fresh connection and closes it. */
export async function queryOnce<R extends Record<string, unknown> = Record<string, unknown>>(
  config: string | ClientConfig,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = await connectClient(config);
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The error a promise rejects with (fails loudly if it resolves). */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the operation to fail, but it succeeded');
}

/** pg's processID and secretKey, which it keeps after BackendKeyData but does not declare in its types. */
export function backendKey(client: Client): { processId: number; secretKey: Buffer } {
  const { processID, secretKey } = client as unknown as { processID: number | null; secretKey: number | null };
  if (processID === null || secretKey === null) throw new Error('client has no BackendKeyData yet');
  const key = Buffer.alloc(4);
  key.writeInt32BE(secretKey, 0);
  return { processId: processID, secretKey: key };
}

// ---------------------------------------------------------------------------------------------
// Command-line clients

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Environment for libpq tools: no PG* variables from the caller leak in. */
function toolEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, ...extra };
}

export interface RunningTool {
  child: ChildProcess;
  result: Promise<ToolResult>;
  stdout(): string;
  stderr(): string;
}

/** Starts a tool; its result resolves when it exits (killed with SIGKILL after `timeoutMs`). */
export function startTool(
  command: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {},
): RunningTool {
  const child = spawn(command, args, { env: toolEnv(opts.env), cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  const result = new Promise<ToolResult>((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, result, stdout: () => stdout, stderr: () => stderr };
}

export function runTool(command: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {}): Promise<ToolResult> {
  return startTool(command, args, opts).result;
}

/** psql without psqlrc, stopping at the first error; `args` follow the connection string. */
export function runPsql(url: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {}): Promise<ToolResult> {
  return runTool('psql', [url, '-X', '-v', 'ON_ERROR_STOP=1', ...args], opts);
}

// ---------------------------------------------------------------------------------------------
// Raw protocol

export interface BackendMessage {
  type: string;
  body: Buffer;
}

/** Splits a buffer of typed backend messages; a trailing incomplete message is left out. */
export function splitMessages(data: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  let offset = 0;
  while (offset + 5 <= data.length) {
    const length = data.readInt32BE(offset + 1);
    if (length < 4 || offset + 1 + length > data.length) break;
    out.push({ type: String.fromCharCode(data[offset]!), body: data.subarray(offset + 5, offset + 1 + length) });
    offset += 1 + length;
  }
  return out;
}

export interface ParsedError {
  /** Every field by its type letter: S, V, C, M, D, ... */
  fields: Record<string, string>;
  code: string | undefined;
  message: string | undefined;
  severity: string | undefined;
}

/**
 * Parses an ErrorResponse: 'E', Int32 length, then (type byte, C string) fields ending in a zero
 * byte. Accepts the whole message (starting at 'E') or just its body. Throws if it is not one.
 */
export function parseErrorResponse(data: Buffer): ParsedError {
  let body = data;
  if (data[0] === 0x45) {
    if (data.length < 5) throw new Error(`truncated ErrorResponse header (${data.length} bytes)`);
    const length = data.readInt32BE(1);
    if (length < 5 || length + 1 > data.length) throw new Error(`truncated ErrorResponse (length ${length}, have ${data.length - 1})`);
    body = data.subarray(5, 1 + length);
  }
  const fields: Record<string, string> = {};
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const type = String.fromCharCode(body[offset]!);
    const end = body.indexOf(0, offset + 1);
    if (end === -1) throw new Error('ErrorResponse field is not terminated');
    fields[type] = body.toString('utf8', offset + 1, end);
    offset = end + 1;
  }
  if (offset >= body.length) throw new Error('ErrorResponse has no terminating zero byte');
  return { fields, code: fields.C, message: fields.M, severity: fields.V ?? fields.S };
}

/**
 * A protocol-2 error, as PostgreSQL refuses a 1.x or 2.x client: 'E', then "SEVERITY:  message\n"
 * as one NUL-terminated string, no length word. Undefined if `data` is not exactly that.
 */
export function parseProtocol2Error(data: Buffer): { severity: string; message: string } | undefined {
  if (data.length < 3 || data[0] !== 0x45 || data.indexOf(0) !== data.length - 1) return undefined;
  const match = /^([A-Z]+): {2}(.*)\n$/s.exec(data.toString('utf8', 1, data.length - 1));
  return match === null ? undefined : { severity: match[1]!, message: match[2]! };
}

export interface RawConversation {
  socket: Socket;
  /** Every byte received so far. */
  received(): Buffer;
  /** Resolves when the peer has closed the connection (or errored); with what was received. */
  closed: Promise<{ data: Buffer; error?: Error }>;
  /** Resolves once at least `n` bytes have arrived (rejects if the socket closes first or after timeoutMs). */
  waitForBytes(n: number, timeoutMs?: number): Promise<Buffer>;
  /**
   * Resolves once the received bytes contain a complete message of `type`; typed messages are
   * parsed from byte `from` on (after a one-byte SSL answer, say).
   */
  waitForMessage(type: string, opts?: { from?: number; timeoutMs?: number }): Promise<BackendMessage>;
}

/** Opens a plain TCP connection (or a Unix-domain one, given its `path`) and records everything the peer sends. */
export function rawConnect(where: number | { path: string }, host = '127.0.0.1'): Promise<RawConversation> {
  return new Promise((resolve, reject) => {
    const socket = typeof where === 'number' ? connect({ host, port: where }) : connect({ path: where.path });
    socket.setNoDelay(true);
    const chunks: Buffer[] = [];
    let isClosed = false;
    const waiters = new Set<() => void>();
    const notify = (): void => {
      for (const w of [...waiters]) w();
    };
    const received = (): Buffer => Buffer.concat(chunks);
    let closeError: Error | undefined;
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      notify();
    });
    const closed = new Promise<{ data: Buffer; error?: Error }>((resolveClosed) => {
      socket.on('error', (err) => {
        closeError = err;
      });
      socket.on('close', () => {
        isClosed = true;
        notify();
        resolveClosed({ data: received(), ...(closeError ? { error: closeError } : {}) });
      });
    });
    const waitFor = <T>(probe: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
      new Promise<T>((res, rej) => {
        const check = (): void => {
          const value = probe();
          if (value !== undefined) {
            cleanup();
            res(value);
          } else if (isClosed) {
            cleanup();
            rej(new Error(`connection closed before ${what}; received ${received().length} bytes`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          rej(new Error(`timed out waiting for ${what}; received ${received().length} bytes`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve({
        socket,
        received,
        closed,
        waitForBytes: (n, timeoutMs = 10_000) => waitFor(() => (received().length >= n ? received() : undefined), `${n} bytes`, timeoutMs),
        waitForMessage: (type, { from = 0, timeoutMs = 10_000 } = {}) =>
          waitFor(() => splitMessages(received().subarray(from)).find((m) => m.type === type), `a '${type}' message`, timeoutMs),
      });
    });
    socket.once('error', reject);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function inBatches<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += limit) await Promise.all(items.slice(i, i + limit).map(fn));
}

/** A simple-protocol Query message, for raw-socket tests. */
export function simpleQuery(sql: string): Buffer {
  return message('Q', `${sql}\0`);
}

/** Sends a CancelRequest on its own connection and returns what the proxy answered before closing. */
export async function sendCancel(port: number, processId: number, secretKey: Buffer): Promise<Buffer> {
  const conn = await rawConnect(port);
  conn.socket.write(cancelRequest(processId, secretKey));
  const { data } = await conn.closed;
  return data;
}
