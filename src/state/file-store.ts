// The embedded state store: one JSON file, replaced atomically (temp file, fsync, rename, fsync dir).

import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { emptyState, type ClusterState, type StateStore } from './cluster-state';

export class FileStateStore implements StateStore {
  readonly file: string;
  // Serialises writers inside this process; across processes the revision check guards.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly dir: string) {
    this.file = join(dir, 'cluster-state.json');
  }

  async load(): Promise<ClusterState> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw new Error(`cannot read cluster state ${this.file}: ${(err as Error).message}`);
    }
    try {
      return { ...emptyState(), ...(JSON.parse(text) as Partial<ClusterState>) };
    } catch (err) {
      throw new Error(`cluster state ${this.file} is not valid JSON: ${(err as Error).message}`);
    }
  }

  compareAndSet(expectedRevision: number, next: Omit<ClusterState, 'revision'>): Promise<ClusterState | undefined> {
    const run = this.queue.then(async () => {
      const current = await this.load();
      if (current.revision !== expectedRevision) return undefined;
      const written: ClusterState = { ...next, revision: expectedRevision + 1 };
      await this.writeAtomically(JSON.stringify(written, null, 2) + '\n');
      return written;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async writeAtomically(text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const temp = `${this.file}.${process.pid}.tmp`;
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, this.file);
    // The rename is only durable once the directory entry is on disk.
    const dirHandle = await open(this.dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }
}
