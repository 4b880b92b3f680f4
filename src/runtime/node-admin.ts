// The failover core's hands on a server: promote it, fence it. Each call opens its own short-lived connection.

import { spawn } from 'node:child_process';
import { Client } from 'pg';
import type { BackendNode } from '../proxy/session';

export interface AdminCredentials {
  user: string;
  password: string;
  database: string;
}

export type FencingAction = 'none' | 'sql' | 'command';

export interface FencingOptions {
  action: FencingAction;
  command: string | null;
  timeoutMs: number;
}

export class NodeAdmin {
  constructor(
    private readonly credentials: AdminCredentials,
    private readonly connectTimeoutMs: number,
  ) {}

  /**
   * pg_promote(wait) returns true once the server has left recovery, false when the wait ran out.
   * A read-only setting left by an earlier `sql` fencing is cleared only afterwards: reloading the
   * configuration while a standby is retrying for WAL makes it miss the promote request until
   * wal_retrieve_retry_interval (5 s by default) has passed.
   */
  async promote(node: BackendNode, timeoutMs: number): Promise<void> {
    await this.withClient(node, timeoutMs, async (client) => {
      const readOnly = await client.query<{ on: boolean }>("SELECT current_setting('default_transaction_read_only') = 'on' AS on");
      const waitSeconds = Math.max(1, Math.ceil(timeoutMs / 1000));
      const { rows } = await client.query<{ promoted: boolean }>('SELECT pg_promote(true, $1) AS promoted', [waitSeconds]);
      if (rows[0]?.promoted !== true) throw new Error(`pg_promote() did not finish within ${waitSeconds} s`);
      if (readOnly.rows[0]?.on) {
        await client.query('ALTER SYSTEM RESET default_transaction_read_only');
        await client.query('SELECT pg_reload_conf()');
      }
    });
  }

  /** Applies fencing.action; resolves to what was done, rejects with why it could not be. */
  async fence(node: BackendNode, fencing: FencingOptions): Promise<string> {
    switch (fencing.action) {
      case 'none':
        return 'fencing.action is none: the node is fenced at the proxy only';
      case 'sql':
        return this.withClient(node, fencing.timeoutMs, async (client) => {
          // Read-only for new transactions, and every client session ended: whatever still
          // reaches this server directly (not through pgfloat) cannot write.
          await client.query('ALTER SYSTEM SET default_transaction_read_only = on');
          await client.query('SELECT pg_reload_conf()');
          const { rows } = await client.query<{ n: string }>(
            `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                AND application_name NOT IN ('pgfloat-monitor', 'pgfloat-admin')`,
          );
          return `set default_transaction_read_only and terminated ${rows[0]?.n ?? 0} client sessions`;
        });
      case 'command':
        return runFencingCommand(node, fencing);
    }
  }

  private async withClient<T>(node: BackendNode, timeoutMs: number, work: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({
      host: node.host,
      port: node.port,
      user: this.credentials.user,
      password: this.credentials.password,
      database: this.credentials.database,
      application_name: 'pgfloat-admin',
      connectionTimeoutMillis: this.connectTimeoutMs,
      query_timeout: timeoutMs + 5000,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await work(client);
    } finally {
      client.end().catch(() => undefined);
    }
  }
}

function runFencingCommand(node: BackendNode, fencing: FencingOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', fencing.command!], {
      env: { ...process.env, PGFLOAT_NODE_NAME: node.name, PGFLOAT_NODE_HOST: node.host, PGFLOAT_NODE_PORT: String(node.port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), fencing.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`fencing command could not start: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const tail = output.trim().split('\n').slice(-5).join(' | ');
      if (code === 0) resolve(`fencing command succeeded${tail ? `: ${tail}` : ''}`);
      else reject(new Error(`fencing command failed (${signal ?? `exit ${code}`})${tail ? `: ${tail}` : ''}`));
    });
  });
}
