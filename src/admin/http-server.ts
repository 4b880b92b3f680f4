// The admin HTTP API: GET /status, /metrics, /health, /operations; POST operations and /reload behind a bearer token.

import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ListenAddress } from '../config/address';
import type { Logger } from '../log';
import type { ReloadAnswer } from './reload';

export interface OperationAnswer {
  accepted: boolean;
  message: string;
  /** Long operations (switchover, failover, rejoin): follow it at GET /operations/{id}. */
  operation?: string;
}

export type AdminOperation =
  | { command: 'switchover'; to?: string; force: boolean }
  | { command: 'failover'; to?: string; allowDataLoss: boolean }
  | { command: 'rejoin'; node: string; rebuild: boolean }
  | { command: 'adopt' | 'fence' | 'unfence'; node: string };

export interface AdminHandlers {
  status(): unknown;
  /** For load-balancer probes: is there a routed primary, and a routed read-only target? */
  roles(): { primary: string | undefined; standbys: readonly string[] };
  metrics(): Promise<{ contentType: string; body: string }>;
  nodeNames(): readonly string[];
  operate(op: AdminOperation): Promise<OperationAnswer>;
  operation(id: string): unknown;
  operations(): unknown[];
  /** Re-reads the TLS files in every process (as SIGHUP does). */
  reload(): Promise<ReloadAnswer>;
}

const MAX_BODY = 64 * 1024;
const OPERATION_PATH = /^\/(switchover|failover|rejoin|adopt|fence|unfence)(?:\/([^/]+))?$/;
const OPERATION_RECORD = /^\/operations\/([^/]+)$/;

export class AdminServer {
  private server: Server | undefined;
  private bound: ListenAddress | undefined;

  constructor(
    private readonly listen: ListenAddress,
    private readonly handlers: AdminHandlers,
    private readonly log: Logger,
    /** Operations are refused (401) unless the request carries this token; none set: always refused. */
    private readonly token: string | undefined,
  ) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        this.log.error({ err: err.message, url: req.url }, 'admin request failed');
        if (!res.headersSent) sendJson(res, 500, { error: err.message });
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot listen on ${this.listen.host}:${this.listen.port} (admin.listen): ${err.message}`)));
      server.listen(this.listen.port, this.listen.host, () => resolve());
    });
    const address = server.address();
    this.bound = typeof address === 'object' && address ? { host: address.address, port: address.port } : this.listen;
    this.server = server;
    this.log.info({ address: `${this.bound.host}:${this.bound.port}` }, 'admin API listening');
  }

  address(): ListenAddress | undefined {
    return this.bound;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://admin').pathname;
    if (req.method === 'POST' && OPERATION_PATH.test(path)) return this.handleOperation(req, res, path);
    if (req.method === 'POST' && path === '/reload') return this.handleReload(req, res);
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: `method ${req.method} not allowed on ${path}` });
    switch (path) {
      case '/status':
        return sendJson(res, 200, this.handlers.status());
      case '/metrics': {
        const { contentType, body } = await this.handlers.metrics();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
        return;
      }
      case '/operations':
        return sendJson(res, 200, { operations: this.handlers.operations() });
      case '/health':
        return sendJson(res, 200, { status: 'ok' });
      // Patroni's probe endpoints, answered for the cluster behind pgfloat: 200 or 503.
      case '/primary': {
        const { primary } = this.handlers.roles();
        return sendJson(res, primary ? 200 : 503, { primary: primary ?? null });
      }
      case '/replica': {
        const { standbys } = this.handlers.roles();
        return sendJson(res, standbys.length > 0 ? 200 : 503, { standbys });
      }
      default: {
        const record = OPERATION_RECORD.exec(path);
        if (record !== null) {
          const found = this.handlers.operation(decodeURIComponent(record[1]!));
          return found === undefined ? sendJson(res, 404, { error: `no operation ${record[1]}` }) : sendJson(res, 200, found);
        }
        return sendJson(res, 404, { error: `no such endpoint: ${path}` });
      }
    }
  }

  /** 200 when every relay loop took the new files; 409 when any kept its previous certificate (the answer says why). */
  private async handleReload(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.admit(req, res, '/reload')) return;
    // The body is read (and must be JSON, or empty) as for the other POSTs, though nothing in it is used.
    if ((await readJson(req)) === undefined) return sendJson(res, 400, { error: 'the request body must be a JSON object (or empty)' });
    this.log.warn({ remote: req.socket.remoteAddress }, 'reload requested');
    const answer = await this.handlers.reload();
    return sendJson(res, answer.reloaded ? 200 : 409, answer);
  }

  /** Answers 401 and returns false unless the request carries the token. */
  private admit(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (this.authorized(req)) return true;
    this.log.warn({ path, remote: req.socket.remoteAddress }, 'admin operation refused: missing or wrong token');
    res.setHeader('www-authenticate', 'Bearer');
    sendJson(res, 401, {
      error: this.token === undefined ? 'operations are disabled: set admin.token or PGFLOAT_ADMIN_TOKEN' : 'missing or wrong bearer token',
    });
    return false;
  }

  private async handleOperation(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (!this.admit(req, res, path)) return;
    const body = await readJson(req);
    if (body === undefined) return sendJson(res, 400, { error: 'the request body must be a JSON object (or empty)' });
    const match = OPERATION_PATH.exec(path)!;
    const command = match[1] as AdminOperation['command'];
    const node = match[2] === undefined ? undefined : decodeURIComponent(match[2]);
    const names = this.handlers.nodeNames();
    let op: AdminOperation;
    if (command === 'failover' || command === 'switchover') {
      const to = node ?? (typeof body.to === 'string' ? body.to : undefined);
      if (to !== undefined && !names.includes(to)) return sendJson(res, 404, { error: `no node named ${to}` });
      op = command === 'failover' ? { command, to, allowDataLoss: body.allowDataLoss === true } : { command, to, force: body.force === true };
    } else {
      if (node === undefined) return sendJson(res, 400, { error: `POST /${command}/{node}: the node is missing` });
      if (!names.includes(node)) return sendJson(res, 404, { error: `no node named ${node}` });
      op = command === 'rejoin' ? { command, node, rebuild: body.rebuild === true } : { command, node };
    }
    this.log.warn({ op }, 'admin operation requested');
    const answer = await this.handlers.operate(op);
    return sendJson(res, answer.accepted ? 202 : 409, answer);
  }

  private authorized(req: IncomingMessage): boolean {
    if (this.token === undefined) return false;
    const header = req.headers.authorization ?? '';
    // The scheme name is case-insensitive (RFC 9110); the token is compared in constant time.
    const match = /^bearer +(.*)$/i.exec(header);
    const given = Buffer.from(match ? match[1]! : '');
    const expected = Buffer.from(this.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        req.destroy();
        return resolve(undefined);
      }
      chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (text === '') return resolve({});
      try {
        const value: unknown = JSON.parse(text);
        resolve(typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined);
      } catch {
        resolve(undefined);
      }
    });
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
