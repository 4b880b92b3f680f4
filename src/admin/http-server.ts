// The admin HTTP API: GET /status (JSON), GET /metrics (Prometheus), GET /health.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ListenAddress } from '../config/address';
import type { Logger } from '../log';

export interface AdminHandlers {
  status(): unknown;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export class AdminServer {
  private server: Server | undefined;
  private bound: ListenAddress | undefined;

  constructor(
    private readonly listen: ListenAddress,
    private readonly handlers: AdminHandlers,
    private readonly log: Logger,
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
      case '/health':
        return sendJson(res, 200, { status: 'ok' });
      default:
        return sendJson(res, 404, { error: `no such endpoint: ${path}` });
    }
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
