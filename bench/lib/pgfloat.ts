// Starts `pgfloat start` as a process of its own (so it does not share the bench's event loop), its log in a file.

import { createWriteStream, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { onCleanup } from './cleanup';
import { startService, stopChild, waitForPort, type Service } from './processes';

// dist/bench/lib/ -> dist/src/cli/main.js
const PGFLOAT_MAIN = resolve(__dirname, '../../src/cli/main.js');

export interface PgfloatStart {
  dir: string;
  /** Names the process, its config `<dir>/<name>.yaml` and its log `<dir>/<name>.log`. */
  name: string;
  config: string;
  /** Its read-write port: started once something listens there. */
  port: number;
  logLevel: string;
  /** Node flags before the script (`--inspect=...`). */
  nodeFlags?: string[];
  /**
   * Runs pgfloat under this "open files" limit (soft and hard), through `sh -c 'ulimit -n N; exec ...'`
   * (exec keeps the pid), to see how it behaves at the limit.
   */
  openFilesLimit?: number;
  /** Stopped through this at the end of a run; without it, at the bench's end. */
  cleanup?: (step: () => unknown) => void;
}

export interface PgfloatProcess {
  service: Service;
  pid: number;
  logFile: string;
}

export async function startPgfloat(opts: PgfloatStart): Promise<PgfloatProcess> {
  const configFile = join(opts.dir, `${opts.name}.yaml`);
  writeFileSync(configFile, opts.config, { mode: 0o600 }); // it may hold the admin token
  const args = [...(opts.nodeFlags ?? []), PGFLOAT_MAIN, 'start', '--config', configFile, '--log-level', opts.logLevel];
  const service =
    opts.openFilesLimit === undefined
      ? startService(opts.name, process.execPath, args)
      : startService(opts.name, '/bin/sh', ['-c', `ulimit -n ${opts.openFilesLimit} && exec "$0" "$@"`, process.execPath, ...args]);
  const logFile = join(opts.dir, `${opts.name}.log`);
  service.child.stdout!.pipe(createWriteStream(logFile));
  service.child.stderr!.pipe(createWriteStream(join(opts.dir, `${opts.name}.stderr`)));
  (opts.cleanup ?? onCleanup)(() => stopChild(service.child));
  await waitForPort(opts.port, service);
  return { service, pid: service.child.pid!, logFile };
}

/** The `nodes:` section for a cluster's nodes; with `managed`, each with its dataDir so pgfloat can stop, start and rejoin it. */
export function nodesYaml(nodes: ReadonlyArray<{ name: string; host: string; port: number; dataDir: string }>, managed = false): string[] {
  return ['nodes:', ...nodes.map((n) => `  - { name: ${n.name}, host: ${n.host}, port: ${n.port}${managed ? `, dataDir: "${n.dataDir}"` : ''} }`)];
}
