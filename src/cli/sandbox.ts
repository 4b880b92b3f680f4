// `pgfloat sandbox`: the embedded default: a local primary and standby with pgfloat in front.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseConfigObject } from '../config/load';
import { createLogger } from '../log';
import { findPgBinaries, INSTALL_HINT } from '../postgres/binaries';
import { LocalCluster } from '../sandbox/local-cluster';
import { runUntilSignal } from './run-instance';

export interface SandboxOptions {
  dir: string;
  port: number;
  nodePort: number;
  adminPort: number;
  logLevel: string;
}

export async function runSandbox(opts: SandboxOptions): Promise<void> {
  const binaries = findPgBinaries();
  if (binaries === undefined) {
    process.stderr.write(`pgfloat sandbox: ${INSTALL_HINT}\n`);
    process.exit(1);
  }
  const log = createLogger(opts.logLevel);
  const baseDir = resolve(opts.dir);
  log.info({ dir: baseDir, binaries: binaries.binDir }, 'starting sandbox cluster');
  const cluster = await LocalCluster.open({
    baseDir: resolve(baseDir, 'cluster'),
    ports: [opts.nodePort, opts.nodePort + 1],
    binaries,
    log: (message) => log.info({ component: 'sandbox' }, message),
  });
  const config = parseConfigObject(
    {
      listen: { readWrite: `127.0.0.1:${opts.port}`, readOnly: `127.0.0.1:${opts.port + 1}` },
      admin: { listen: `127.0.0.1:${opts.adminPort}`, token: sandboxToken(baseDir) },
      // The sandbox's servers are local: pgfloat manages them (switchover rejoins the old primary, `pgfloat rejoin` works).
      nodes: cluster.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, dataDir: n.dataDir })),
      management: { binDir: binaries.binDir },
      state: { dir: resolve(baseDir, 'state') },
      log: { level: opts.logLevel },
    },
    'sandbox',
  );
  try {
    await runUntilSignal(
      config,
      log,
      () => {
        process.stdout.write(
          [
            '',
            'pgfloat sandbox is running (Ctrl-C stops it and both PostgreSQL servers):',
            `  read-write: postgres://postgres@127.0.0.1:${opts.port}/postgres`,
            `  read-only:  postgres://postgres@127.0.0.1:${opts.port + 1}/postgres`,
            `  status:     http://127.0.0.1:${opts.adminPort}/status  (or: npx pgfloat status --admin http://127.0.0.1:${opts.adminPort})`,
            `  operations: export PGFLOAT_ADMIN_TOKEN=${config.admin.token}`,
            `  data:       ${baseDir}`,
            '',
          ].join('\n') + '\n',
        );
      },
      async () => {
        log.info('stopping sandbox PostgreSQL servers');
        await cluster.stop();
      },
    );
  } catch (err) {
    await cluster.stop().catch(() => undefined);
    throw err;
  }
}

/** The sandbox's admin token, made once and kept beside its data so operations work across restarts. */
function sandboxToken(baseDir: string): string {
  const file = join(baseDir, 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(baseDir, { recursive: true });
  const token = randomBytes(24).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return token;
}
