// Starts a real primary plus streaming standby in a temporary directory for one test.

import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, type LocalClusterOptions } from '../../src/sandbox/local-cluster';
import { freePort } from '../../src/sandbox/ports';

export interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function startCluster(t: Teardown, opts: Partial<LocalClusterOptions> = {}): Promise<LocalCluster> {
  // Another process may take a port between freePort() and the server's bind, so a bind failure gets new ports.
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'pgfloat-test-'));
    // mkdtemp makes it 0700; the unprivileged user that runs PostgreSQL must be able to enter it.
    chmodSync(dir, 0o755);
    try {
      const cluster = await LocalCluster.open({ baseDir: join(dir, 'cluster'), ports: [await freePort(), await freePort()], ...opts });
      t.teardown(async () => {
        await cluster.destroy();
        rmSync(dir, { recursive: true, force: true });
      });
      return cluster;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      if (attempt >= 3 || opts.ports || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}
