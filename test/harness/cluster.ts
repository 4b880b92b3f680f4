// Starts a real primary plus streaming standby in a temporary directory for one test file.

import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, type LocalClusterOptions } from '../../src/sandbox/local-cluster';
import { freePort } from './ports';

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function startCluster(t: Teardown, opts: Partial<LocalClusterOptions> = {}): Promise<LocalCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-test-'));
  // mkdtemp makes it 0700; the unprivileged PostgreSQL user must be able to enter it.
  chmodSync(dir, 0o755);
  const cluster = await LocalCluster.open({ baseDir: join(dir, 'cluster'), ports: [await freePort(), await freePort()], ...opts });
  t.teardown(() => cluster.destroy().then(() => import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true }))));
  return cluster;
}
