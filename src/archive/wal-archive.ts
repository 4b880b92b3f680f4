// WAL archiving for an archive shared by primary and standby: never overwrite, never expose a partial file.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, link, lstat, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fsyncPath } from '../system/files';

export type ArchiveStatus = 'archived' | 'already-archived';

export interface ArchiveResult {
  /** 'already-archived': a file with identical contents was there (the other server, or a retry, got there first). */
  status: ArchiveStatus;
  /** The file in the archive. */
  path: string;
  bytes: number;
  /** One line for humans, e.g. for `--verbose`. */
  message: string;
}

/** The archive holds a different file under the same name; overwriting it could destroy the only good copy. */
export class WalConflictError extends Error {
  constructor(
    message: string,
    readonly archivedPath: string,
    readonly sourcePath: string,
  ) {
    super(message);
    this.name = 'WalConflictError';
  }
}

const CHUNK = 1024 * 1024;

/** The name comes from %f, but a typo in archive_command could turn it into a path; refuse anything but a plain name. */
export function validateWalFileName(fileName: string): void {
  const problem =
    fileName === '' ? 'is empty'
    : fileName.includes('/') || fileName.includes('\\') ? 'contains a path separator'
    : fileName.includes('\0') ? 'contains a NUL byte'
    : fileName.includes('..') ? 'contains ".."'
    // Our temporary files start with a dot; a WAL, history or backup file never does.
    : fileName.startsWith('.') ? 'starts with "."'
    : undefined;
  if (problem !== undefined) throw new Error(`refusing WAL file name ${JSON.stringify(fileName)}: it ${problem} (expected a plain name such as %f)`);
}

function tempName(dir: string, name: string): string {
  return join(dir, `.${name}.tmp.${process.pid}.${randomBytes(6).toString('hex')}`);
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function unlinkQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

/** How two files differ; 'size' and 'content' compare the first file (a) with the second (b). */
export type Difference =
  | { kind: 'size'; sizeA: number; sizeB: number }
  | { kind: 'content'; offset: number; size: number }
  | { kind: 'changed-while-reading'; offset: number };

/** Where two files first differ, or undefined when they are byte-for-byte equal; reads both in chunks. */
export async function firstDifference(a: string, b: string): Promise<Difference | undefined> {
  let ha: FileHandle | undefined;
  let hb: FileHandle | undefined;
  try {
    ha = await open(a, 'r');
    hb = await open(b, 'r');
    const [sa, sb] = await Promise.all([ha.stat(), hb.stat()]);
    if (sa.size !== sb.size) return { kind: 'size', sizeA: sa.size, sizeB: sb.size };
    const ba = Buffer.allocUnsafe(CHUNK);
    const bb = Buffer.allocUnsafe(CHUNK);
    for (let offset = 0; offset < sa.size; ) {
      const want = Math.min(CHUNK, sa.size - offset);
      const [ra, rb] = await Promise.all([readFully(ha, ba, want, offset), readFully(hb, bb, want, offset)]);
      if (ra !== want || rb !== want) return { kind: 'changed-while-reading', offset };
      const cmp = ba.subarray(0, want).compare(bb.subarray(0, want));
      if (cmp !== 0) {
        let i = 0;
        while (ba[i] === bb[i]) i++;
        return { kind: 'content', offset: offset + i, size: sa.size };
      }
      offset += want;
    }
    return undefined;
  } finally {
    await ha?.close();
    await hb?.close();
  }
}

/** read() may return less than asked even for a regular file; loop until `length` bytes or end of file. */
async function readFully(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * A name already in the archive: identical contents is success (made durable first, since the writer that
 * linked it may have died before its own fsync); different contents is a loud failure that leaves it alone.
 */
async function settleExisting(sourcePath: string, target: string, archiveDir: string, bytes: number): Promise<ArchiveResult> {
  const difference = await firstDifference(sourcePath, target).catch((err: unknown) => {
    throw new Error(`comparing ${sourcePath} with the archived ${target} failed: ${describe(err)}`);
  });
  if (difference !== undefined) {
    const how =
      difference.kind === 'size' ? `the archived file has ${difference.sizeB} bytes, the source ${difference.sizeA}`
      : difference.kind === 'content' ? `first difference at byte ${difference.offset} of ${difference.size}`
      : `a file changed size while being compared, at byte ${difference.offset}`;
    throw new WalConflictError(
      `ARCHIVE CONFLICT: ${target} already exists with DIFFERENT contents than ${sourcePath} (${how}); ` +
        `it was left untouched and this segment is NOT archived. Two servers may be writing diverging WAL ` +
        `(split brain, or a timeline reused): investigate before removing anything from the archive`,
      target,
      sourcePath,
    );
  }
  await fsyncPath(target);
  await fsyncPath(archiveDir);
  return { status: 'already-archived', path: target, bytes, message: `${target} already archived, identical` };
}

/**
 * archive_command: copies sourcePath (%p) into archiveDir as fileName (%f). Success means the file is in the
 * archive, complete and fsynced; several archivers may run at once for the same name.
 */
export async function archiveWal(sourcePath: string, fileName: string, archiveDir: string): Promise<ArchiveResult> {
  validateWalFileName(fileName);
  const source = resolve(sourcePath);
  const dir = resolve(archiveDir);
  const target = join(dir, fileName);

  const sourceStat = await lstat(source).catch((err: unknown) => {
    throw new Error(`cannot read the WAL file to archive ${source}: ${describe(err)}`);
  });
  if (!sourceStat.isFile()) throw new Error(`the WAL file to archive ${source} is not a regular file`);
  const dirStat = await lstat(dir).catch((err: unknown) => {
    throw new Error(`archive directory ${dir} is not usable: ${describe(err)}`);
  });
  if (!dirStat.isDirectory()) throw new Error(`archive directory ${dir} is not a directory`);

  // The common case with `archive_mode = always`: the other server archived it first; skip the copy.
  const existing = await lstat(target).catch((err: unknown) => {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw new Error(`cannot check ${target}: ${describe(err)}`);
  });
  if (existing !== undefined) {
    if (!existing.isFile()) throw new Error(`${target} exists in the archive but is not a regular file; left untouched`);
    return settleExisting(source, target, dir, sourceStat.size);
  }

  const temp = tempName(dir, fileName);
  let linked = false;
  try {
    // EXCL: the random name should be unique already, but never write into a file somebody else owns.
    await copyFile(source, temp, constants.COPYFILE_EXCL).catch((err: unknown) => {
      throw new Error(`copying ${source} to ${temp} failed: ${describe(err)}`);
    });
    await fsyncPath(temp).catch((err: unknown) => {
      throw new Error(`fsync of ${temp} failed: ${describe(err)}`);
    });
    // link() fails with EEXIST instead of replacing: rename() would let a racing archiver silently clobber.
    try {
      await link(temp, target);
      linked = true;
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') throw new Error(`linking ${temp} to ${target} failed: ${describe(err)}`);
    }
    if (!linked) return await settleExisting(source, target, dir, sourceStat.size);
  } finally {
    await unlinkQuietly(temp);
  }
  await fsyncPath(dir).catch((err: unknown) => {
    throw new Error(`fsync of the archive directory ${dir} failed (${target} may not survive a crash): ${describe(err)}`);
  });
  return { status: 'archived', path: target, bytes: sourceStat.size, message: `archived ${source} as ${target}` };
}

/**
 * restore_command: copies archiveDir/fileName (%f) to destinationPath (%p); 'missing' when the archive lacks it,
 * which PostgreSQL expects routinely (it probes for history files and the next segment).
 */
export async function restoreWal(fileName: string, destinationPath: string, archiveDir: string): Promise<'restored' | 'missing'> {
  validateWalFileName(fileName);
  const source = join(resolve(archiveDir), fileName);
  const destination = resolve(destinationPath);
  const sourceStat = await lstat(source).catch((err: unknown) => {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw new Error(`cannot check ${source}: ${describe(err)}`);
  });
  if (sourceStat === undefined) return 'missing';
  if (!sourceStat.isFile()) throw new Error(`${source} exists in the archive but is not a regular file`);

  // Written beside the destination and renamed, so PostgreSQL never reads a partial file. No fsync: after a
  // crash, recovery fetches the segment from the archive again.
  const temp = tempName(dirname(destination), basename(destination));
  try {
    await copyFile(source, temp, constants.COPYFILE_EXCL).catch((err: unknown) => {
      throw new Error(`copying ${source} to ${temp} failed: ${describe(err)}`);
    });
    await rename(temp, destination).catch((err: unknown) => {
      throw new Error(`renaming ${temp} to ${destination} failed: ${describe(err)}`);
    });
  } catch (err) {
    await unlinkQuietly(temp);
    throw err;
  }
  return 'restored';
}
