// The switchover benchmark's set-up: a managed LocalCluster, pgfloat as its own process with an admin token, and the admin API calls.

import { chmodSync, createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { LocalCluster } from '../../src/sandbox/local-cluster';
import { freePort } from '../../src/sandbox/ports';
import { onCleanup, startService, stopChild, waitForPort } from '../lib/processes';
import { SCHEMA } from './load';

export interface SetupOptions {
  drainMs: number;
  logLevel: string;
}

export interface Env {
  dir: string;
  cluster: LocalCluster;
  readWritePort: number;
  readOnlyPort: number;
  adminUrl: string;
  token: string;
  logFile: string;
  configText: string;
  pgfloatPid: number | undefined;
}

export interface OperationView {
  id: string;
  state: 'running' | 'succeeded' | 'failed';
  startedAt: string;
  finishedAt: string | null;
  steps: Array<{ at: string; message: string }>;
  result: string | null;
}

export interface StatusView {
  primary: string | null;
  standbys: string[];
  phase: string;
  degenerate: boolean;
  nodes: Array<{ name: string; fenced: boolean; health: string }>;
}

type Say = (message: string) => void;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function openCluster(dir: string, say: Say): Promise<LocalCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await LocalCluster.open({ baseDir: join(dir, `cluster${attempt}`), ports: [await freePort(), await freePort()], log: say });
    } catch (err) {
      // Another process may take a port between freePort() and the bind.
      if (attempt >= 3 || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function onPrimary(cluster: LocalCluster, statements: string[]): Promise<void> {
  const client = new Client({ connectionString: cluster.primary.connectionString() });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Cluster, schema, then pgfloat with both nodes managed (dataDir), so each switchover also rejoins the old primary. */
export async function setUp(opts: SetupOptions, say: Say): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-switchover-'));
  chmodSync(dir, 0o755); // the unprivileged user that runs PostgreSQL must enter it
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  say(`creating a primary + standby under ${dir}`);
  const cluster = await openCluster(dir, () => undefined);
  onCleanup(() => cluster.destroy());
  await onPrimary(cluster, SCHEMA);

  const [readWritePort, readOnlyPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const token = randomBytes(24).toString('base64url');
  const nodes = cluster.nodes.map((n) => `  - { name: ${n.name}, host: ${n.host}, port: ${n.port}, dataDir: "${n.dataDir}" }`);
  // Everything else at its default (monitor 500/1000/3, holdMs 10 s, catchUpTimeoutMs 10 s, fencing sql).
  const configText = [
    `listen: { readWrite: "127.0.0.1:${readWritePort}", readOnly: "127.0.0.1:${readOnlyPort}" }`,
    `admin: { listen: "127.0.0.1:${adminPort}", token: "${token}" }`,
    'nodes:',
    ...nodes,
    `switchover: { drainMs: ${opts.drainMs} }`,
    `state: { dir: "${join(dir, 'state')}" }`,
    `log: { level: ${opts.logLevel} }`,
    '',
  ].join('\n');
  const configFile = join(dir, 'pgfloat.yaml');
  writeFileSync(configFile, configText, { mode: 0o600 });
  const main = resolve(__dirname, '../../src/cli/main.js');
  const service = startService('pgfloat', process.execPath, [main, 'start', '--config', configFile, '--log-level', opts.logLevel]);
  const logFile = join(dir, 'pgfloat.log');
  const logStream = createWriteStream(logFile);
  service.child.stdout!.pipe(logStream);
  service.child.stderr!.pipe(createWriteStream(join(dir, 'pgfloat.stderr')));
  onCleanup(() => stopChild(service.child));
  await waitForPort(readWritePort, service);
  const env: Env = {
    dir,
    cluster,
    readWritePort,
    readOnlyPort,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    token,
    logFile,
    configText: configText.replace(token, '<token>'),
    pgfloatPid: service.child.pid,
  };
  await waitForStatus(env, (s) => s.primary === cluster.primary.name && s.standbys.length > 0, 30_000, 'pgfloat to route to n1 with a standby');
  return env;
}

export async function status(env: Env): Promise<StatusView> {
  return (await (await fetch(`${env.adminUrl}/status`)).json()) as StatusView;
}

export async function waitForStatus(env: Env, check: (s: StatusView) => boolean, timeoutMs: number, what: string): Promise<StatusView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(env).catch(() => undefined);
    if (s !== undefined && check(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

/** POST /switchover: the HTTP status and the answer ({ accepted, message, operation }). */
export async function requestSwitchover(env: Env, to: string): Promise<{ status: number; accepted: boolean; message: string; operation?: string }> {
  const res = await fetch(`${env.adminUrl}/switchover`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${env.token}` },
    body: JSON.stringify({ to }),
  });
  const body = (await res.json()) as { accepted?: boolean; message?: string; operation?: string; error?: string };
  return { status: res.status, accepted: body.accepted === true, message: body.message ?? body.error ?? '', operation: body.operation };
}

/** Polls GET /operations/{id} until it ends; 50 ms apart, so its end is known within that. */
export async function awaitOperation(env: Env, id: string, timeoutMs: number): Promise<OperationView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const op = (await (await fetch(`${env.adminUrl}/operations/${id}`)).json()) as OperationView;
    if (op.state !== 'running') return op;
    if (Date.now() > deadline) throw new Error(`operation ${id} still running after ${timeoutMs} ms: ${JSON.stringify(op.steps)}`);
    await sleep(50);
  }
}

/** The (client, seq) keys present in bench_history on a server, read directly (not through pgfloat), and whether balances match history. */
export async function readHistory(connectionString: string): Promise<{ keys: Set<string>; balanced: boolean; rows: number }> {
  const client = new Client({ connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ client: number; seq: number }>('select client, seq from bench_history');
    // Each transaction adds delta to one account and records it in history: sums differ only if a half transaction survived.
    const sums = await client.query<{ accounts: string; history: string }>(
      'select (select coalesce(sum(abalance), 0) from bench_accounts)::text as accounts, (select coalesce(sum(delta), 0) from bench_history)::text as history',
    );
    return { keys: new Set(rows.map((r) => `${r.client}/${r.seq}`)), balanced: sums.rows[0]!.accounts === sums.rows[0]!.history, rows: rows.length };
  } finally {
    await client.end();
  }
}
