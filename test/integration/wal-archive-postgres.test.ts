// A real primary and standby with `archive_mode = always` sharing one archive through `pgfloat archive-wal`.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { unprivilegedUser } from '../../src/system/os-user';
import type { LocalNode } from '../../src/sandbox/local-cluster';
import { startCluster } from '../harness/cluster';
import { queryOnce, sleep } from '../harness/clients';

const main = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const user = unprivilegedUser();

/**
 * tap adds its coverage hook to NODE_OPTIONS of every process spawned under it, PostgreSQL servers included; as
 * the server user the hook fails to write into the runner's directory and litters stderr, so `env -u` drops it.
 */
const archiveCommand = (archive: string): string =>
  `env -u NODE_OPTIONS "${process.execPath}" "${main}" archive-wal "%p" "%f" --to "${archive}"`;

interface Archiver {
  archived_count: number;
  last_archived_wal: string | null;
  failed_count: number;
  last_failed_wal: string | null;
}

/** A directory the server user owns, under a parent it can traverse. */
function serverDir(base: string, name: string): string {
  const dir = join(base, name);
  mkdirSync(dir, { mode: 0o700 });
  if (user) chownSync(dir, user.uid, user.gid);
  return dir;
}

async function archiver(node: LocalNode): Promise<Archiver> {
  const [row] = await queryOnce<Archiver & Record<string, unknown>>(
    node.connectionString(),
    'SELECT archived_count::int, last_archived_wal, failed_count::int, last_failed_wal FROM pg_stat_archiver',
  );
  return row!;
}

/** Writes some rows and ends the segment; returns the name of the segment just completed. */
async function completeSegment(node: LocalNode, rows = 2000): Promise<string> {
  await queryOnce(node.connectionString(), 'INSERT INTO filler SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, $1::int) g', [rows]);
  const [row] = await queryOnce<{ wal: string }>(node.connectionString(), 'SELECT pg_walfile_name(pg_switch_wal()) AS wal');
  return row!.wal;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, explain: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${explain()}`);
    await sleep(250);
  }
}

/** Same-timeline WAL file names sort in WAL order. */
const reached = (s: Archiver, wal: string): boolean => s.last_archived_wal !== null && s.last_archived_wal >= wal;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI as PostgreSQL would run it: as the server user, from another directory. */
function cliAsServer(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, main, ...args], {
      cwd: '/',
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(guard);
      resolve({ status, stdout, stderr });
    });
  });
}

t.test('primary and standby archive into one directory without failures, and restore-wal reads it back', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'pgfloat-wal-pg-'));
  chmodSync(base, 0o755);
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const archive = serverDir(base, 'archive');
  // The standby is a pg_basebackup clone: it inherits both settings with postgresql.conf.
  const cluster = await startCluster(t, { extraConf: { archive_mode: 'always', archive_command: archiveCommand(archive) } });
  const { primary, standby } = cluster;
  const logs = (): string => `--- ${primary.name} ---\n${primary.logTail(30)}\n--- ${standby.name} ---\n${standby.logTail(30)}`;
  const show = async (): Promise<string> => JSON.stringify({ primary: await archiver(primary), standby: await archiver(standby) });

  await queryOnce(primary.connectionString(), 'CREATE TABLE filler (id int, payload text)');
  const segments: string[] = [];
  for (let i = 0; i < 4; i++) segments.push(await completeSegment(primary));
  const last = segments[segments.length - 1]!;

  let state = '';
  await waitFor('both servers to archive the last segment', 120_000, async () => {
    const [p, s] = [await archiver(primary), await archiver(standby)];
    state = JSON.stringify({ primary: p, standby: s });
    return reached(p, last) && reached(s, last) ? true : undefined;
  }, () => `${state}\n${logs()}`);

  const files = readdirSync(archive);
  for (const segment of segments) t.ok(files.includes(segment), `${segment} is in the archive`);
  t.same(files.filter((f) => f.startsWith('.')), [], 'no temporary files in the archive');
  const [p, s] = [await archiver(primary), await archiver(standby)];
  t.equal(p.failed_count, 0, `the primary archived without failures (${await show()})`);
  t.equal(s.failed_count, 0, `the standby archived without failures (${await show()})`);
  t.ok(p.archived_count > 0, 'the primary archived segments');
  t.ok(s.archived_count > 0, 'the standby archived the segments it received');
  t.ok(segments.every((seg) => readFileSync(join(archive, seg)).length === 16 * 1024 * 1024), 'archived segments are whole 16 MB files');
  for (const node of [primary, standby]) {
    const log = readFileSync(node.logFile, 'utf8');
    t.notMatch(log, /pgfloat archive-wal|archive command failed|EACCES|node:/, `nothing from archive-wal in the ${node.name} log (it is quiet on success)`);
  }

  // restore_command as the standby would run it, into a directory it owns.
  const restoreDir = serverDir(base, 'restore');
  const destination = join(restoreDir, 'RECOVERYXLOG');
  const restored = await cliAsServer(['restore-wal', segments[1]!, destination, '--from', archive]);
  t.equal(restored.status, 0, `restore-wal exits 0 (${restored.stderr.trim()})`);
  t.ok(readFileSync(destination).equals(readFileSync(join(archive, segments[1]!))), 'the restored file equals the archived segment byte for byte');
  const missing = await cliAsServer(['restore-wal', '0000000100000000000000FE', join(restoreDir, 'other'), '--from', archive]);
  t.equal(missing.status, 1, 'restore-wal of a segment not in the archive exits 1');
  t.match(missing.stderr, /^pgfloat restore-wal: 0000000100000000000000FE is not in the archive .*\n$/, 'with one short line');
  t.same(readdirSync(restoreDir), ['RECOVERYXLOG'], 'nothing else left in the restore directory');
});

t.test('a different file already in the archive makes archiving fail loudly and is left untouched', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'pgfloat-wal-pg-'));
  chmodSync(base, 0o755);
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const archive = serverDir(base, 'archive');
  const cluster = await startCluster(t, { extraConf: { archive_mode: 'on', archive_command: archiveCommand(archive) } });
  const { primary } = cluster;

  await queryOnce(primary.connectionString(), 'CREATE TABLE filler (id int, payload text)');
  // The segment being written now: plant an impostor under its name, as a diverged server might have.
  const [row] = await queryOnce<{ wal: string }>(primary.connectionString(), 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS wal');
  const target = row!.wal;
  const impostor = randomBytes(16 * 1024 * 1024);
  writeFileSync(join(archive, target), impostor);
  // Few rows, so the segment is ended by the switch rather than filled up.
  t.equal(await completeSegment(primary, 10), target);

  let state = '';
  await waitFor(`the primary's archiver to fail on ${target}`, 60_000, async () => {
    const s = await archiver(primary);
    state = JSON.stringify(s);
    return s.failed_count > 0 && s.last_failed_wal === target ? true : undefined;
  }, () => `${state}\n${primary.logTail(30)}`);
  t.pass(`PostgreSQL saw archive_command fail for ${target}`);
  t.ok(readFileSync(join(archive, target)).equals(impostor), 'the file in the archive is untouched');
  t.match(readFileSync(primary.logFile, 'utf8'), new RegExp(`pgfloat archive-wal: ARCHIVE CONFLICT: \\S*${target} already exists with DIFFERENT contents`), 'the server log says why');
  t.notOk(reached(await archiver(primary), target), 'the segment is not reported archived');

  // Once the operator has moved the impostor aside, the next attempt archives the real segment.
  rmSync(join(archive, target));
  const next = await completeSegment(primary);
  await waitFor(`the primary to archive ${next}`, 150_000, async () => {
    const s = await archiver(primary);
    state = JSON.stringify(s);
    return reached(s, next) ? true : undefined;
  }, () => `${state}\n${primary.logTail(30)}`);
  const files = readdirSync(archive);
  t.ok(files.includes(target) && files.includes(next), `${target} and ${next} are archived after the conflict is cleared`);
  t.notOk(readFileSync(join(archive, target)).equals(impostor), 'with the real contents');
  t.same(files.filter((f) => f.startsWith('.')), [], 'no temporary files in the archive');
});
