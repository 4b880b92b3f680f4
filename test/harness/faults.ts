// Fault injection for the failover scenario tests: frozen and crashed servers, a cuttable TCP path.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { ClientConfig } from 'pg';
import type { NodeStatus, PgfloatStatus } from '../../src/admin/status';
import type { LocalNode } from '../../src/sandbox/local-cluster';
import { connectClient, queryOnce, type ObservedClient } from './clients';
import type { Teardown } from './cluster';

// ---------------------------------------------------------------------------------------------
// Processes

/** The direct children of `pid` (empty when it has none or is gone). */
export function childPids(pid: number): number[] {
  try {
    const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
    return out
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return []; // ps exits 1 when nothing matches
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Best effort: the process may be gone. */
export function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

/** Process state letter from ps ('T' when stopped), or undefined when the process is gone. */
export function processState(pid: number): string | undefined {
  try {
    return execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim()[0];
  } catch {
    return undefined;
  }
}

export interface Frozen {
  pids: number[];
  /** SIGCONT to every frozen process; safe to call more than once. */
  thaw(): void;
}

/**
 * SIGSTOPs a server's postmaster first (so it forks nothing new), then all its children. The
 * teardown sends SIGCONT, so nothing stays stopped after the test, even when it fails; it is
 * registered here, after the cluster's, so it runs before the cluster is destroyed.
 */
export function freezeServer(t: Teardown, node: LocalNode): Frozen {
  const postmaster = node.postmasterPid();
  if (postmaster === undefined) throw new Error(`${node.name} is not running`);
  const pids = [postmaster];
  const frozen: Frozen = {
    pids,
    thaw: () => {
      for (const pid of pids) signalQuietly(pid, 'SIGCONT');
    },
  };
  t.teardown(() => frozen.thaw());
  process.kill(postmaster, 'SIGSTOP');
  // A child forked just before the stop shows up on a second look.
  for (let round = 0; round < 2; round++) {
    for (const pid of childPids(postmaster)) {
      if (pids.includes(pid)) continue;
      pids.push(pid);
      process.kill(pid, 'SIGSTOP');
    }
  }
  return frozen;
}

/** Freezes one process (with a SIGCONT teardown). */
export function freezePid(t: Teardown, pid: number): Frozen {
  const frozen: Frozen = { pids: [pid], thaw: () => signalQuietly(pid, 'SIGCONT') };
  t.teardown(() => frozen.thaw());
  process.kill(pid, 'SIGSTOP');
  return frozen;
}

/** SIGKILLs a server's postmaster and waits until it and every child it had are gone, so it can be started again. */
export async function crashServer(node: LocalNode, timeoutMs = 30_000): Promise<void> {
  const postmaster = node.postmasterPid();
  if (postmaster === undefined) throw new Error(`${node.name} is not running`);
  const pids = [postmaster, ...childPids(postmaster)];
  node.kill('SIGKILL');
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isAlive)) {
    if (Date.now() > deadline) throw new Error(`processes of ${node.name} still alive after SIGKILL: ${pids.filter(isAlive).join(', ')}`);
    await sleep(50);
  }
}

/**
 * Whether pg_promote() (or pg_ctl promote) has been asked of a standby and not yet acted on: it
 * leaves a `promote` file in the data directory, which the startup process removes when it
 * promotes. With that process stopped, the file says the request arrived.
 */
export function promoteRequested(node: LocalNode): boolean {
  return existsSync(join(node.dataDir, 'promote'));
}

// ---------------------------------------------------------------------------------------------
// Clients

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type Outcome<T> = { kind: 'answered'; value: T } | { kind: 'error'; error: Error & { code?: string } } | { kind: 'hung' };

/** Settles `promise` within `timeoutMs`, saying whether it answered, failed, or hung (client-side timeout). */
export async function outcomeWithin<T>(promise: Promise<T>, timeoutMs: number): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'hung' }), timeoutMs);
  });
  try {
    return await Promise.race([
      promise.then(
        (value): Outcome<T> => ({ kind: 'answered', value }),
        (error: Error): Outcome<T> => ({ kind: 'error', error }),
      ),
      hung,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The server port a session is connected to, as the server itself says. */
export async function serverPortOf(client: ObservedClient): Promise<number> {
  const { rows } = await client.query<{ port: number }>('select inet_server_port() as port');
  return rows[0]!.port;
}

/** Client backends on a server that are not pgfloat's own monitor/admin connections, nor the asking one. */
export async function clientBackendCount(node: LocalNode): Promise<number> {
  const rows = await queryOnce<{ n: number }>(
    node.connectionString(),
    `select count(*)::int as n from pg_stat_activity
      where backend_type = 'client backend'
        and application_name not in ('pgfloat-monitor', 'pgfloat-admin')
        and pid <> pg_backend_pid()`,
  );
  return rows[0]!.n;
}

/** One statement on a fresh direct connection; undefined when the server cannot be reached or errs. */
export async function tryQuery<R extends Record<string, unknown>>(config: string | ClientConfig, sql: string, params: unknown[] = []): Promise<R[] | undefined> {
  try {
    const attempt = queryOnce<R>(typeof config === 'string' ? { connectionString: config, connectionTimeoutMillis: 3000 } : config, sql, params);
    const outcome = await outcomeWithin(attempt, 5000);
    return outcome.kind === 'answered' ? outcome.value : undefined;
  } catch {
    return undefined;
  }
}

/** Connects, or returns the connection error (never throws). */
export async function connectOrError(config: string | ClientConfig): Promise<{ client?: ObservedClient; error?: Error & { code?: string; detail?: string } }> {
  try {
    return { client: await connectClient(config) };
  } catch (err) {
    return { error: err as Error & { code?: string; detail?: string } };
  }
}

// ---------------------------------------------------------------------------------------------
// pgfloat's view

export function nodeStatus(status: PgfloatStatus, name: string): NodeStatus {
  const node = status.nodes.find((n) => n.name === name);
  if (node === undefined) throw new Error(`no node ${name} in status`);
  return node;
}

/** The value of one sample of GET /metrics, e.g. metricValue(url, 'pgfloat_node_rogue_primary', { node: 'n1' }). */
export async function metricValue(adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = (m[2] ?? '')
      .split(',')
      .filter(Boolean)
      .sort()
      .join(',');
    if (have === wanted) return Number(m[3]);
  }
  return undefined;
}

export { startPgfloatAt, stateDirFor, type NodeAddress, type RunningPgfloat as PgfloatInstance } from './pgfloat';

// ---------------------------------------------------------------------------------------------
// A TCP path that can be cut

export interface Forwarder {
  port: number;
  /** Closes the listener and every forwarded connection: new connections are refused. */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** Forwards 127.0.0.1:<port> to 127.0.0.1:<targetPort>; the teardown closes it. */
export async function startForwarder(t: Teardown, targetPort: number): Promise<Forwarder> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = connect(targetPort, '127.0.0.1');
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on('error', () => undefined);
          sock.on('close', () => {
            sockets.delete(sock);
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream);
        upstream.pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as { port: number }).port;
        server = s;
        resolve();
      });
    });
  const cut = async (): Promise<void> => {
    const s = server;
    server = undefined;
    const closed = s ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve();
    for (const sock of sockets) sock.destroy();
    await closed;
  };
  await listen();
  t.teardown(() => cut().catch(() => undefined));
  return {
    get port() {
      return port;
    },
    cut,
    restore: async () => {
      if (server === undefined) await listen();
    },
    close: cut,
  };
}

/**
 * Opens `perKind` read-write and `perKind` read-only clients through pgfloat (alternating, so
 * even indexes are read-write) and closes them at teardown.
 */
export async function openMixedClients(
  t: Teardown,
  urls: { readWriteUrl(): string; readOnlyUrl(): string },
  perKind: number,
): Promise<ObservedClient[]> {
  const clients: ObservedClient[] = [];
  t.teardown(() => {
    for (const c of clients) c.end().catch(() => undefined);
  });
  for (let i = 0; i < perKind; i++) clients.push(await connectClient(urls.readWriteUrl()), await connectClient(urls.readOnlyUrl()));
  return clients;
}
