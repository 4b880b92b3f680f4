// The PostgreSQL side of a bench run: a temp dir, a primary + standby on free ports, and the schema the run writes to.

import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { LocalCluster, type LocalClusterOptions } from '../../src/sandbox/local-cluster';
import { freePort } from '../../src/sandbox/ports';

type AddCleanup = (step: () => unknown) => void;

/** A temp dir `pgfloat-<name>-...` that the unprivileged user running PostgreSQL can enter; removed through `cleanup`. */
export function benchDir(name: string, cleanup: AddCleanup): string {
  const dir = mkdtempSync(join(tmpdir(), `pgfloat-${name}-`));
  chmodSync(dir, 0o755); // mkdtemp makes it 0700
  cleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A primary + standby under `dir`, destroyed through `cleanup`. */
export async function openCluster(dir: string, cleanup: AddCleanup, opts: Omit<LocalClusterOptions, 'baseDir' | 'ports'> = {}): Promise<LocalCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      const cluster = await LocalCluster.open({ baseDir: join(dir, `cluster${attempt}`), ports: [await freePort(), await freePort()], ...opts });
      cleanup(() => cluster.destroy());
      return cluster;
    } catch (err) {
      // Another process may take a port between freePort() and the bind.
      if (attempt >= 3 || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}

/** Runs `statements` in order on the primary, directly (not through pgfloat). */
export async function runOnPrimary(cluster: LocalCluster, statements: readonly string[]): Promise<void> {
  const client = new Client({ connectionString: cluster.primary.connectionString() });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}
