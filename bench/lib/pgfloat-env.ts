// A bench's pgfloat in front of a fresh primary + standby, with its admin API, enough file descriptors and, if asked, its V8 inspector.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { freePort } from '../../src/sandbox/ports';
import { waitForStatus, type AdminEndpoint } from './admin-api';
import { onCleanup } from './cleanup';
import { benchDir, openCluster, runOnPrimary } from './cluster';
import { HeapProbe } from './heap-probe';
import { nodesYaml, startPgfloat } from './pgfloat';
import { openFileLimit } from './process-sample';
import type { Say } from './run-output';

/** How a managed run's cluster is set up, for the results' method section. */
export const MANAGED_CLUSTER_METHOD = 'one LocalCluster (PostgreSQL primary + async streaming standby, wal_log_hints on) for the whole run; both nodes managed by pgfloat (nodes[].dataDir)';

export interface PgfloatEnvOptions {
  /** Names the temp directory. */
  name: string;
  /** postgresql.conf settings for both nodes (max_connections, shared_buffers, ...). */
  serverConf: Record<string, string | number>;
  /** Statements run on the primary before pgfloat starts. */
  schema: readonly string[];
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

export interface PgfloatEnv extends AdminEndpoint {
  dir: string;
  cluster: LocalCluster;
  readWritePort: number;
  readOnlyPort: number;
  logFile: string;
  /** pgfloat.yaml with the token masked, for the results. */
  configText: string;
  pgfloatPid: number;
  /** pgfloat's "Max open files", read from /proc after it started. */
  openFileLimit: { soft: number; hard: number };
  /** How the limit was set, for the report. */
  openFileNote: string;
  /** Connected to pgfloat's inspector when `heapProbe` was asked for. */
  heap: HeapProbe | undefined;
}

/**
 * Node raises its own soft "open files" limit to the hard one at start-up, so the hard limit is what
 * bounds pgfloat: it must cover the run, unless the run lowers it on purpose.
 */
function openFilesNote(needed: number, limit: number | undefined): string {
  if (limit !== undefined) return `limited on purpose to ${limit} with ulimit -n (${needed} needed)`;
  const own = openFileLimit(process.pid);
  if (own.hard < needed) throw new Error(`pgfloat needs ${needed} open files, the hard limit is ${own.hard}: raise it (ulimit -Hn as root, LimitNOFILE= under systemd, --ulimit nofile= for docker)`);
  return `hard limit ${own.hard}, which Node makes its soft limit too; ${needed} needed`;
}

/** Cluster, schema, then pgfloat routing writes to n1 with a standby, everything stopped at the bench's end. */
export async function setUpPgfloat(opts: PgfloatEnvOptions, say: Say): Promise<PgfloatEnv> {
  const dir = benchDir(opts.name, onCleanup);
  const settings = Object.entries(opts.serverConf).map(([k, v]) => `${k}=${v}`);
  say(`creating a primary + standby under ${dir}${settings.length ? ` (${settings.join(', ')})` : ''}`);
  const cluster = await openCluster(dir, onCleanup, { extraConf: opts.serverConf });
  await runOnPrimary(cluster, opts.schema);

  const [readWritePort, readOnlyPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const token = randomBytes(24).toString('base64url');
  const config = [
    `listen: { readWrite: "127.0.0.1:${readWritePort}", readOnly: "127.0.0.1:${readOnlyPort}" }`,
    `admin: { listen: "127.0.0.1:${adminPort}", token: "${token}" }`,
    ...nodesYaml(cluster.nodes, opts.managed),
    `state: { dir: "${join(dir, 'state')}" }`,
    `log: { level: ${opts.logLevel} }`,
    ...opts.extraConfig,
    '',
  ].join('\n');
  const openFileNote = openFilesNote(opts.openFilesNeeded, opts.openFilesLimit);
  const inspectPort = opts.heapProbe ? await freePort() : undefined;
  const pgfloat = await startPgfloat({
    dir,
    name: 'pgfloat',
    config,
    port: readWritePort,
    logLevel: opts.logLevel,
    nodeFlags: inspectPort === undefined ? [] : [`--inspect=127.0.0.1:${inspectPort}`],
    openFilesLimit: opts.openFilesLimit,
  });
  const limit = openFileLimit(pgfloat.pid);
  if (opts.openFilesLimit === undefined && limit.soft < opts.openFilesNeeded) throw new Error(`pgfloat (pid ${pgfloat.pid}) runs with ${limit.soft} open files, ${opts.openFilesNeeded} needed`);
  const heap = inspectPort === undefined ? undefined : await HeapProbe.connect(inspectPort);
  if (heap) onCleanup(() => heap.close());
  const env: PgfloatEnv = {
    dir,
    cluster,
    readWritePort,
    readOnlyPort,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    token,
    logFile: pgfloat.logFile,
    configText: config.replace(token, '<token>'),
    pgfloatPid: pgfloat.pid,
    openFileLimit: limit,
    openFileNote,
    heap,
  };
  await waitForStatus(env, (s) => s.primary === cluster.primary.name && s.standbys.length > 0, 30_000, 'pgfloat to route to n1 with a standby');
  return env;
}
