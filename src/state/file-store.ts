// The embedded state store: one JSON file, replaced atomically (temp file, fsync, rename, fsync dir).

import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { emptyState, type ClusterState } from '../cluster/state';
import { writeFileAtomically } from '../system/files';
import type { StateStore } from './store';

export class FileStateStore implements StateStore {
  readonly file: string;
  private readonly lockFile: string;
  // Serialises writers inside this process; the lock file serialises them across processes.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly lockTimeoutMs = 10_000,
  ) {
    this.file = join(dir, 'cluster-state.json');
    this.lockFile = join(dir, 'cluster-state.lock');
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
    const run = this.queue.then(() =>
      this.withLock(async () => {
        const current = await this.load();
        if (current.revision !== expectedRevision) return undefined;
        const written: ClusterState = { ...next, revision: expectedRevision + 1 };
        await writeFileAtomically(this.file, JSON.stringify(written, null, 2) + '\n');
        return written;
      }),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The read-check-rename must not interleave with another process doing the same, or both
   * would win one revision. An O_EXCL lock file holds our pid; a lock whose owner has died is
   * taken over.
   */
  private async withLock<T>(work: () => Promise<T>): Promise<T> {
    await mkdir(this.dir, { recursive: true });
    const deadline = Date.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        const handle = await open(this.lockFile, 'wx', 0o600);
        await handle.writeFile(String(process.pid));
        await handle.close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (await this.lockOwnerIsGone()) {
          await unlink(this.lockFile).catch(() => undefined);
          continue;
        }
        if (Date.now() > deadline) {
          throw new Error(`cluster state ${this.file} is locked by another process (${this.lockFile}) for over ${this.lockTimeoutMs} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
      }
    }
    try {
      return await work();
    } finally {
      await unlink(this.lockFile).catch(() => undefined);
    }
  }

  private async lockOwnerIsGone(): Promise<boolean> {
    let pid: number;
    try {
      pid = Number(await readFile(this.lockFile, 'utf8'));
    } catch {
      return false; // removed meanwhile, or being written: try again
    }
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }
}
