// Starts what the benchmark measures: a temporary cluster and, in front of its primary, pgfloat, pgbouncer and haproxy.

import { chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { unprivilegedUser } from '../../src/system/os-user';
import { freePort } from '../../src/sandbox/ports';
import { relayLoops } from '../../src/workers/worker-count';
import { onCleanup } from '../lib/cleanup';
import { benchDir, openCluster } from '../lib/cluster';
import { nodesYaml, startPgfloat } from '../lib/pgfloat';
import { startService, waitForPort } from '../lib/processes';

export interface Target {
  name: string;
  port: number;
  /** The proxy's process, for CPU accounting (its descendant processes count with it); undefined for direct. */
  pid?: number;
  /** How it was run, for the report. */
  setup: string;
}

export interface Bench {
  cluster: LocalCluster;
  targets: Target[];
  /** Targets that could not be included, with the reason. */
  skipped: string[];
}

export const PGBOUNCER = '/usr/sbin/pgbouncer';
export const HAPROXY = '/usr/sbin/haproxy';

export async function startBench(log: (message: string) => void): Promise<Bench> {
  const dir = benchDir('bench', onCleanup);
  const cluster = await openCluster(dir, onCleanup, { log });
  const primary = cluster.primary;
  const targets: Target[] = [{ name: 'direct', port: primary.port, setup: 'PostgreSQL 15 primary, TCP 127.0.0.1' }];
  const skipped: string[] = [];

  // pgfloat at its defaults (proxy.workers: auto, one loop per two cores: 1 on two cores), then
  // on one loop and on two worker processes whatever the host, so each is measured everywhere.
  const loops = relayLoops('auto');
  targets.push(await pgfloatTarget(dir, cluster, 'pgfloat', {}, `defaults (proxy.workers auto = ${loops} here)`));
  if (loops !== 1) targets.push(await pgfloatTarget(dir, cluster, 'pgfloat-1w', { workers: 1 }, 'proxy.workers 1'));
  targets.push(await pgfloatTarget(dir, cluster, 'pgfloat-2w', { workers: 2 }, 'proxy.workers 2: a control process and two relay workers'));
  // The opt-in busy polling trades CPU for wake-up latency; measured beside the default.
  targets.push(await pgfloatTarget(dir, cluster, 'pgfloat-busypoll', { busyPollUs: 200 }, 'proxy.busyPollUs 200'));
  if (existsSync(PGBOUNCER)) targets.push(await startPgbouncer(dir, primary.port));
  else skipped.push(`pgbouncer: ${PGBOUNCER} not installed`);
  if (existsSync(HAPROXY)) targets.push(await startHaproxy(dir, primary.port));
  else skipped.push(`haproxy: ${HAPROXY} not installed`);
  return { cluster, targets, skipped };
}

/** A separate `pgfloat start` process (like pgbouncer and haproxy), so it does not share the bench's event loop. */
async function pgfloatTarget(dir: string, cluster: LocalCluster, name: string, proxy: { workers?: number; busyPollUs?: number }, what: string): Promise<Target> {
  const port = await freePort();
  const config = [
    `listen: { readWrite: "127.0.0.1:${port}", readOnly: null }`,
    'admin: { listen: null }',
    ...nodesYaml(cluster.nodes),
    `state: { dir: "${join(dir, `${name}-state`)}" }`,
    `proxy: ${JSON.stringify(proxy)}`,
    'log: { level: warn }',
    '',
  ].join('\n');
  const { pid } = await startPgfloat({ dir, name, config, port, logLevel: 'warn' });
  return {
    name,
    port,
    pid,
    setup: `node ${process.version}, separate process, log level warn, monitor every 500 ms, ${what}`,
  };
}

/** pgbouncer in session mode, run as the unprivileged user (it refuses root), in the foreground. */
async function startPgbouncer(dir: string, pgPort: number): Promise<Target> {
  const user = unprivilegedUser();
  const port = await freePort();
  const home = join(dir, 'pgbouncer');
  mkdirSync(home);
  const ini = join(home, 'pgbouncer.ini');
  const userlist = join(home, 'users.txt');
  writeFileSync(userlist, '"postgres" ""\n');
  writeFileSync(
    ini,
    [
      '[databases]',
      `* = host=127.0.0.1 port=${pgPort}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      "unix_socket_dir =",
      'auth_type = trust',
      `auth_file = ${userlist}`,
      'pool_mode = session',
      'max_client_conn = 200',
      'default_pool_size = 50',
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${join(home, 'pgbouncer.log')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'log_pooler_errors = 1',
      '',
    ].join('\n'),
  );
  if (user) for (const f of [home, ini, userlist]) chownSync(f, user.uid, user.gid);
  const service = startService('pgbouncer', PGBOUNCER, [ini], user);
  await waitForPort(port, service);
  return { name: 'pgbouncer', port, pid: service.child.pid, setup: 'pool_mode=session, default_pool_size=50, auth_type=trust' };
}

/** haproxy in tcp mode with one server; nbthread is left at its default (one thread per CPU). */
async function startHaproxy(dir: string, pgPort: number): Promise<Target> {
  const user = unprivilegedUser();
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 1000',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 1h',
      '  timeout server 1h',
      'listen pg',
      `  bind 127.0.0.1:${port}`,
      `  server primary 127.0.0.1:${pgPort}`,
      '',
    ].join('\n'),
  );
  if (user) chownSync(cfg, user.uid, user.gid);
  // -db: stay in the foreground so it is our child and dies with us.
  const service = startService('haproxy', HAPROXY, ['-db', '-f', cfg], user);
  await waitForPort(port, service);
  return { name: 'haproxy', port, pid: service.child.pid, setup: 'mode tcp, one server, default nbthread' };
}
