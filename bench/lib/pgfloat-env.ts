// Set-up for the load and soak benchmarks: a LocalCluster with extra server settings, then `pgfloat start` as its own process with enough file descriptors.

import { chmodSync, createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { LocalCluster } from '../../src/sandbox/local-cluster';
import { freePort } from '../../src/sandbox/ports';
import { HeapProbe } from './heap-probe';
import { openFileLimit } from './process-sample';
import { onCleanup, startService, stopChild, waitForPort } from './processes';
import { waitForStatus, type Env } from '../switchover/setup';

export interface LoadSetupOptions {
  /** mkdtemp prefix under the temp directory. */
  name: string;
  /** postgresql.conf settings for both nodes (max_connections, shared_buffers, ...). */
  serverConf: Record<string, string | number>;
  /** Statements run on the primary before pgfloat starts. */
  schema: string[];
  /** Give both nodes nodes[].dataDir, so pgfloat can stop, start and rejoin them. */
  managed: boolean;
  /** YAML lines appended to pgfloat's configuration (top-level keys). */
  extraConfig: string[];
  /** File descriptors pgfloat must be allowed: about two per client (client and server socket) plus headroom. */
  openFilesNeeded: number;
  /** Run pgfloat under this "open files" limit (soft and hard) instead, to see what happens at the limit. */
  openFilesLimit?: number;
  logLevel: string;
  /** Start pgfloat with the V8 inspector on 127.0.0.1, so the bench can force a GC and read the live heap. */
  heapProbe: boolean;
}

export interface LoadEnv extends Env {
  pgfloatPid: number;
  /** pgfloat's "Max open files", read from /proc after it started. */
  openFileLimit: { soft: number; hard: number };
  /** How the limit was set, for the report. */
  openFileNote: string;
  /** Connected to pgfloat's inspector when `heapProbe` was asked for. */
  heap: HeapProbe | undefined;
}

type Say = (message: string) => void;

async function openCluster(dir: string, serverConf: Record<string, string | number>): Promise<LocalCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await LocalCluster.open({ baseDir: join(dir, `cluster${attempt}`), ports: [await freePort(), await freePort()], extraConf: serverConf });
    } catch (err) {
      // Another process may take a port between freePort() and the bind.
      if (attempt >= 3 || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}

/**
 * The command that starts pgfloat. Node raises its own soft "open files" limit to the hard one
 * at start-up, so the hard limit is what bounds pgfloat: it must cover the run. With `limit`
 * (a run that tests behaviour at the limit) pgfloat is started through
 * `sh -c 'ulimit -n N; exec ...'` instead, which lowers both; `exec` keeps the pid.
 */
function launch(args: string[], needed: number, limit: number | undefined): { command: string; args: string[]; note: string } {
  const own = openFileLimit(process.pid);
  if (limit !== undefined) {
    return { command: '/bin/sh', args: ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, ...args], note: `limited on purpose to ${limit} with ulimit -n (${needed} needed)` };
  }
  if (own.hard < needed) throw new Error(`pgfloat needs ${needed} open files, the hard limit is ${own.hard}: raise it (ulimit -Hn as root, LimitNOFILE= under systemd, --ulimit nofile= for docker)`);
  return { command: process.execPath, args, note: `hard limit ${own.hard}, which Node makes its soft limit too; ${needed} needed` };
}

export async function setUpLoad(opts: LoadSetupOptions, say: Say): Promise<LoadEnv> {
  const dir = mkdtempSync(join(tmpdir(), `pgfloat-${opts.name}-`));
  chmodSync(dir, 0o755); // the unprivileged user that runs PostgreSQL must enter it
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const settings = Object.entries(opts.serverConf).map(([k, v]) => `${k}=${v}`);
  say(`creating a primary + standby under ${dir}${settings.length ? ` (${settings.join(', ')})` : ''}`);
  const cluster = await openCluster(dir, opts.serverConf);
  onCleanup(() => cluster.destroy());
  const primary = new Client({ connectionString: cluster.primary.connectionString() });
  await primary.connect();
  try {
    for (const sql of opts.schema) await primary.query(sql);
  } finally {
    await primary.end();
  }

  const [readWritePort, readOnlyPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const token = randomBytes(24).toString('base64url');
  const nodes = cluster.nodes.map((n) => `  - { name: ${n.name}, host: ${n.host}, port: ${n.port}${opts.managed ? `, dataDir: "${n.dataDir}"` : ''} }`);
  const configText = [
    `listen: { readWrite: "127.0.0.1:${readWritePort}", readOnly: "127.0.0.1:${readOnlyPort}" }`,
    `admin: { listen: "127.0.0.1:${adminPort}", token: "${token}" }`,
    'nodes:',
    ...nodes,
    `state: { dir: "${join(dir, 'state')}" }`,
    `log: { level: ${opts.logLevel} }`,
    ...opts.extraConfig,
    '',
  ].join('\n');
  const configFile = join(dir, 'pgfloat.yaml');
  writeFileSync(configFile, configText, { mode: 0o600 });
  const main = resolve(__dirname, '../../src/cli/main.js');
  const inspectPort = opts.heapProbe ? await freePort() : undefined;
  const nodeFlags = inspectPort === undefined ? [] : [`--inspect=127.0.0.1:${inspectPort}`];
  const how = launch([...nodeFlags, main, 'start', '--config', configFile, '--log-level', opts.logLevel], opts.openFilesNeeded, opts.openFilesLimit);
  const service = startService('pgfloat', how.command, how.args);
  const logFile = join(dir, 'pgfloat.log');
  service.child.stdout!.pipe(createWriteStream(logFile));
  service.child.stderr!.pipe(createWriteStream(join(dir, 'pgfloat.stderr')));
  onCleanup(() => stopChild(service.child));
  await waitForPort(readWritePort, service);
  const pid = service.child.pid!;
  const limit = openFileLimit(pid);
  if (opts.openFilesLimit === undefined && limit.soft < opts.openFilesNeeded) throw new Error(`pgfloat (pid ${pid}) runs with ${limit.soft} open files, ${opts.openFilesNeeded} needed`);
  const env: LoadEnv = {
    dir,
    cluster,
    readWritePort,
    readOnlyPort,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    token,
    logFile,
    configText: configText.replace(token, '<token>'),
    pgfloatPid: pid,
    openFileLimit: limit,
    openFileNote: how.note,
    heap: inspectPort === undefined ? undefined : await HeapProbe.connect(inspectPort),
  };
  if (env.heap) onCleanup(() => env.heap?.close());
  await waitForStatus(env, (s) => s.primary === cluster.primary.name && s.standbys.length > 0, 30_000, 'pgfloat to route to n1 with a standby');
  return env;
}
