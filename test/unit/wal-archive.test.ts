// archiveWal and restoreWal: no overwrite, identical re-archive succeeds, no temporary file left behind.

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { archiveWal, firstDifference, restoreWal, validateWalFileName, WalConflictError } from '../../src/archive/wal-archive';

const SEGMENT = '000000010000000000000001';

async function tempDir(t: tap.Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgfloat-wal-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A source directory standing in for pg_wal and an empty archive directory. */
async function layout(t: tap.Test): Promise<{ wal: string; archive: string }> {
  const base = await tempDir(t);
  const wal = join(base, 'pg_wal');
  const archive = join(base, 'archive');
  await mkdir(wal);
  await mkdir(archive);
  return { wal, archive };
}

async function walFile(dir: string, name: string, contents: Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, contents);
  return path;
}

const noTemps = async (t: tap.Test, dir: string): Promise<void> => {
  const leftovers = (await readdir(dir)).filter((name) => name.startsWith('.'));
  t.same(leftovers, [], `no temporary files in ${dir}`);
};

// Bigger than the 1 MB compare chunk, so a difference in a later chunk is found too.
const segment = (): Buffer => randomBytes(3 * 1024 * 1024 + 123);

t.test('archives a new segment, byte for byte', async (t) => {
  const { wal, archive } = await layout(t);
  const contents = segment();
  const result = await archiveWal(await walFile(wal, SEGMENT, contents), SEGMENT, archive);
  t.equal(result.status, 'archived');
  t.equal(result.path, join(archive, SEGMENT));
  t.equal(result.bytes, contents.length);
  t.ok((await readFile(join(archive, SEGMENT))).equals(contents), 'archived contents equal the source');
  t.same(await readdir(archive), [SEGMENT]);
});

t.test('re-archiving identical contents succeeds and says so', async (t) => {
  const { wal, archive } = await layout(t);
  const source = await walFile(wal, SEGMENT, segment());
  await archiveWal(source, SEGMENT, archive);
  const again = await archiveWal(source, SEGMENT, archive);
  t.equal(again.status, 'already-archived');
  t.match(again.message, /already archived, identical/);
  // The same bytes from another server's pg_wal (archive_mode = always).
  const standbyWal = join(wal, '..', 'standby_wal');
  await mkdir(standbyWal);
  const fromStandby = await walFile(standbyWal, SEGMENT, await readFile(source));
  t.equal((await archiveWal(fromStandby, SEGMENT, archive)).status, 'already-archived');
  await noTemps(t, archive);
});

t.test('different contents under an archived name fail loudly and leave the archived file alone', async (t) => {
  const { wal, archive } = await layout(t);
  const original = segment();
  await archiveWal(await walFile(wal, SEGMENT, original), SEGMENT, archive);

  const changedLate = Buffer.from(original);
  changedLate[changedLate.length - 5] ^= 0xff; // in the last chunk
  const otherWal = join(wal, '..', 'other');
  await mkdir(otherWal);
  const diverged = await walFile(otherWal, SEGMENT, changedLate);
  await t.rejects(archiveWal(diverged, SEGMENT, archive), WalConflictError);
  await t.rejects(archiveWal(diverged, SEGMENT, archive), {
    message: new RegExp(`ARCHIVE CONFLICT: ${join(archive, SEGMENT)} already exists with DIFFERENT contents .*first difference at byte ${changedLate.length - 5} of ${changedLate.length}\\)`),
  });
  const shorter = await walFile(otherWal, `${SEGMENT}.short`, original.subarray(0, 1000));
  await archiveWal(shorter, `${SEGMENT}.short`, archive); // a different name: fine
  await writeFile(shorter, original.subarray(0, 999));
  await t.rejects(archiveWal(shorter, `${SEGMENT}.short`, archive), { message: /the archived file has 1000 bytes, the source 999/ });

  t.ok((await readFile(join(archive, SEGMENT))).equals(original), 'the archived file is unchanged');
  t.ok((await readFile(join(archive, `${SEGMENT}.short`))).equals(original.subarray(0, 1000)), 'the other one too');
  await noTemps(t, archive);
});

t.test('file names that are not plain names are refused before anything is written', async (t) => {
  const { wal, archive } = await layout(t);
  const source = await walFile(wal, SEGMENT, Buffer.from('x'));
  for (const bad of ['', '../escape', 'a/b', '..', '.', 'x..y', '.hidden', 'a\\b', 'nul\0byte', '/abs']) {
    await t.rejects(archiveWal(source, bad, archive), { message: /refusing WAL file name/ }, `archive ${JSON.stringify(bad)}`);
    await t.rejects(restoreWal(bad, join(wal, 'RECOVERYXLOG'), archive), { message: /refusing WAL file name/ }, `restore ${JSON.stringify(bad)}`);
    t.throws(() => validateWalFileName(bad));
  }
  for (const good of [SEGMENT, '00000002.history', `${SEGMENT}.00000028.backup`, `${SEGMENT}.partial`]) {
    t.doesNotThrow(() => validateWalFileName(good), good);
  }
  t.same(await readdir(archive), [], 'nothing written');
  t.same((await readdir(join(archive, '..'))).sort(), ['archive', 'pg_wal'], 'nothing escaped the archive');
});

t.test('failures leave no temporary file behind', async (t) => {
  const { wal, archive } = await layout(t);
  await t.rejects(archiveWal(join(wal, 'does-not-exist'), SEGMENT, archive), { message: /cannot read the WAL file to archive/ });
  await t.rejects(archiveWal(wal, SEGMENT, archive), { message: /is not a regular file/ });
  const source = await walFile(wal, SEGMENT, segment());
  await t.rejects(archiveWal(source, SEGMENT, join(archive, 'missing')), { message: /archive directory .*missing is not usable/ });
  // A directory squatting on the name: not ours to judge or replace.
  await mkdir(join(archive, 'squat'));
  await t.rejects(archiveWal(source, 'squat', archive), { message: /not a regular file; left untouched/ });
  // A source we cannot read fails during the copy, after the temporary file was created.
  if (process.getuid?.() !== 0) {
    await chmod(source, 0o000);
    await t.rejects(archiveWal(source, SEGMENT, archive), { message: /copying .* failed/ });
    await chmod(source, 0o600);
  }
  // The archive directory read-only: nothing can be created (root ignores the mode, so only as a normal user).
  if (process.getuid?.() !== 0) {
    await chmod(archive, 0o500);
    await t.rejects(archiveWal(source, SEGMENT, archive), { message: /copying .* failed/ });
    await chmod(archive, 0o700);
  }
  // A dangling symlink on the name: link() gets EEXIST, and comparing with it fails without touching it.
  await symlink(join(archive, 'nowhere'), join(archive, 'dangling'));
  await t.rejects(archiveWal(source, 'dangling', archive), { message: /not a regular file; left untouched/ });
  await noTemps(t, archive);
  t.same((await readdir(archive)).sort(), ['dangling', 'squat']);
});

t.test('a segment archived concurrently from one process: one archives, the rest find it identical', async (t) => {
  const { wal, archive } = await layout(t);
  const source = await walFile(wal, SEGMENT, segment());
  const results = await Promise.all(Array.from({ length: 8 }, () => archiveWal(source, SEGMENT, archive)));
  t.ok(results.filter((r) => r.status === 'archived').length >= 1, 'at least one did the copy');
  t.equal(results.filter((r) => r.status === 'archived').length + results.filter((r) => r.status === 'already-archived').length, 8);
  t.equal(await firstDifference(source, join(archive, SEGMENT)), undefined);
  await noTemps(t, archive);
});

t.test('restore: a present file is copied, a missing one reported', async (t) => {
  const { wal, archive } = await layout(t);
  const contents = segment();
  await archiveWal(await walFile(wal, SEGMENT, contents), SEGMENT, archive);
  const destination = join(wal, 'RECOVERYXLOG');
  t.equal(await restoreWal(SEGMENT, destination, archive), 'restored');
  t.ok((await readFile(destination)).equals(contents), 'restored contents equal the archived ones');
  // PostgreSQL may leave an older RECOVERYXLOG; the restore replaces it whole.
  await writeFile(destination, 'stale');
  t.equal(await restoreWal(SEGMENT, destination, archive), 'restored');
  t.ok((await readFile(destination)).equals(contents), 'replaced');
  t.equal(await restoreWal('000000010000000000000099', join(wal, 'other'), archive), 'missing');
  t.equal(await restoreWal('00000002.history', join(wal, 'other'), join(archive, 'no-such-dir')), 'missing');
  await t.rejects(restoreWal(SEGMENT, join(wal, 'no-such-dir', 'RECOVERYXLOG'), archive), { message: /copying .* failed/ });
  // The copy succeeds but the rename cannot replace a directory: the copied temporary file must go.
  await mkdir(join(wal, 'a-directory'));
  await t.rejects(restoreWal(SEGMENT, join(wal, 'a-directory'), archive), { message: /renaming .* failed/ });
  t.same((await readdir(wal)).sort(), [SEGMENT, 'RECOVERYXLOG', 'a-directory'], 'no temporary or partial file beside the destination');
  await noTemps(t, archive);
});
