// Durable file writes: the one atomic replace (temp file, fsync, rename, fsync of the directory), and fsync of a path.

import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Flushes a file or directory to disk; a directory's fsync makes the entries created or renamed in it durable. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `file` with `text` so that a reader, or a crash at any moment, sees the old contents or
 * the new, never a mix: written to a temp file beside it, flushed, renamed over it, and the rename
 * made durable by flushing the directory.
 */
export async function writeFileAtomically(file: string, text: string, mode = 0o600): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  const temp = join(dir, `.${basename(file)}.${randomUUID()}.tmp`);
  try {
    const handle = await open(temp, 'w', mode);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncPath(dir);
}
