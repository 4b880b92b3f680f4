// Runs a pgfloat instance in-process in front of a test cluster, on port 0 listeners.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigObject } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { createLogger, silentLogger, type Logger } from '../../src/log';
import { Pgfloat } from '../../src/runtime/pgfloat';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import type { Teardown } from './cluster';

export interface RunningPgfloat {
  instance: Pgfloat;
  config: Config;
  stateDir: string;
  /** Connection strings through the proxy. */
  readWriteUrl(database?: string): string;
  readOnlyUrl(database?: string): string;
  readWritePort: number;
  readOnlyPort: number;
  adminUrl: string;
  /** Stops the instance; safe to call more than once (the teardown calls it too). */
  stop(): Promise<void>;
}

export type ConfigOverrides = Record<string, unknown>;

export interface NodeAddress {
  name: string;
  host: string;
  port: number;
  dataDir?: string;
}

export interface StartOptions {
  password?: string;
  user?: string;
  log?: Logger;
  /** Give pgfloat the nodes' data directories: it can then stop, start and rejoin them itself. */
  managed?: boolean;
}

/** A state directory removed at teardown, shared by the pgfloat instances a test starts over it. */
export function stateDirFor(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function startPgfloat(
  t: Teardown,
  cluster: Pick<LocalCluster, 'nodes'>,
  overrides: ConfigOverrides = {},
  options: StartOptions = {},
): Promise<RunningPgfloat> {
  return startPgfloatAt(t, cluster.nodes, stateDirFor(t), overrides, options);
}

/**
 * pgfloat over `stateDir` with nodes as given (a forwarder's port, say), stoppable in the middle
 * of a test: a second instance over the same dir plays a restarted pgfloat.
 */
export async function startPgfloatAt(
  t: Teardown,
  nodes: readonly NodeAddress[],
  stateDir: string,
  overrides: ConfigOverrides = {},
  options: StartOptions = {},
): Promise<RunningPgfloat> {
  const config = parseConfigObject(
    {
      listen: { readWrite: '127.0.0.1:0', readOnly: '127.0.0.1:0' },
      admin: { listen: '127.0.0.1:0' },
      nodes: nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, ...(options.managed && n.dataDir ? { dataDir: n.dataDir } : {}) })),
      monitor: { intervalMs: 200, timeoutMs: 1000, failuresBeforeDown: 2, password: options.password ?? '' },
      state: { dir: stateDir },
      ...overrides,
      // One relay loop unless the test says otherwise; PGFLOAT_TEST_WORKERS runs a suite with workers.
      proxy: { workers: testWorkers(), ...(overrides.proxy as Record<string, unknown> | undefined) },
    },
    'test',
  );
  const log = options.log ?? (process.env.PGFLOAT_TEST_LOG ? createLogger(process.env.PGFLOAT_TEST_LOG) : silentLogger);
  const instance = new Pgfloat(config, log);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= instance.stop().catch(() => undefined));
  t.teardown(stop);
  await instance.start();
  const rw = instance.address('readWrite')!;
  const ro = instance.address('readOnly');
  const admin = instance.address('admin');
  const user = encodeURIComponent(options.user ?? 'postgres');
  const password = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}`;
  return {
    instance,
    config,
    stateDir,
    readWriteUrl: (db = 'postgres') => `postgres://${user}${password}@127.0.0.1:${rw.port}/${db}`,
    readOnlyUrl: (db = 'postgres') => `postgres://${user}${password}@127.0.0.1:${ro?.port ?? 0}/${db}`,
    readWritePort: rw.port,
    readOnlyPort: ro?.port ?? 0,
    adminUrl: admin ? `http://127.0.0.1:${admin.port}` : '',
    stop,
  };
}

/** proxy.workers for the instances tests start: 1, or PGFLOAT_TEST_WORKERS. */
export function testWorkers(): number {
  const n = Number(process.env.PGFLOAT_TEST_WORKERS ?? '1');
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

// Kept here too: the tests have always imported it from this module.
export { eventually } from './waiting';
