// Many `pgfloat archive-wal` processes racing on one name: identical copies all succeed, different ones never mix.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';

const main = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const PROCESSES = 16;
const ROUNDS = 3;
const SEGMENT_BYTES = 16 * 1024 * 1024;

interface Run {
  status: number | null;
  stderr: string;
}

function archive(source: string, fileName: string, archiveDir: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    // Without tap's coverage hook (which it adds to NODE_OPTIONS of every child) a process starts three times
    // faster, so the racers start closer together and really overlap.
    const args = ['-u', 'NODE_OPTIONS', process.execPath, main, 'archive-wal', source, fileName, '--to', archiveDir];
    const child = spawn('env', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(guard);
      resolve({ status, stderr });
    });
  });
}

async function tempDir(t: tap.Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgfloat-wal-race-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** One pg_wal-like directory per racer, as with several servers sharing an archive. */
async function sources(base: string, round: number, contents: Buffer[]): Promise<string[]> {
  return Promise.all(
    contents.map(async (bytes, i) => {
      const dir = join(base, `round${round}`, `server${i}`);
      await mkdir(dir, { recursive: true });
      const path = join(dir, 'segment');
      await writeFile(path, bytes);
      return path;
    }),
  );
}

t.test(`${PROCESSES} processes archiving identical copies of a segment all succeed`, async (t) => {
  const base = await tempDir(t);
  for (let round = 1; round <= ROUNDS; round++) {
    const archiveDir = join(base, `archive${round}`);
    await mkdir(archiveDir);
    const name = `0000000100000000000000${String(round).padStart(2, '0')}`;
    const bytes = randomBytes(SEGMENT_BYTES);
    const paths = await sources(base, round, Array.from({ length: PROCESSES }, () => bytes));
    const runs = await Promise.all(paths.map((path) => archive(path, name, archiveDir)));
    t.same(runs.map((r) => r.status), Array(PROCESSES).fill(0), `round ${round}: every archiver exits 0`);
    t.same(runs.filter((r) => r.stderr !== '').map((r) => r.stderr), [], `round ${round}: nothing on stderr`);
    t.ok((await readFile(join(archiveDir, name))).equals(bytes), `round ${round}: the archived segment is intact`);
    t.same(await readdir(archiveDir), [name], `round ${round}: no temporary files left`);
    await rm(join(base, `round${round}`), { recursive: true, force: true });
  }
});

t.test(`${PROCESSES} processes archiving different contents under one name: exactly one wins`, async (t) => {
  const base = await tempDir(t);
  for (let round = 1; round <= ROUNDS; round++) {
    const archiveDir = join(base, `archive${round}`);
    await mkdir(archiveDir);
    const name = `0000000200000000000000${String(round).padStart(2, '0')}`;
    // Diverging servers share most of a segment; each copy differs in one byte somewhere, some only near the end.
    const common = randomBytes(SEGMENT_BYTES);
    const contents = Array.from({ length: PROCESSES }, (_, i) => {
      const bytes = Buffer.from(common);
      const at = i % 2 === 0 ? SEGMENT_BYTES - 1 - i : Math.floor((SEGMENT_BYTES / PROCESSES) * i);
      bytes[at] = (bytes[at]! + 1 + i) & 0xff;
      return bytes;
    });
    const paths = await sources(base, round, contents);
    const runs = await Promise.all(paths.map((path) => archive(path, name, archiveDir)));

    const winners = runs.flatMap((r, i) => (r.status === 0 ? [i] : []));
    t.equal(winners.length, 1, `round ${round}: exactly one archiver succeeds (statuses ${runs.map((r) => r.status).join(',')})`);
    const losers = runs.filter((r) => r.status !== 0);
    t.ok(losers.every((r) => r.status === 1), `round ${round}: the others exit 1`);
    t.ok(
      losers.every((r) => /^pgfloat archive-wal: ARCHIVE CONFLICT: .* DIFFERENT contents .*\n$/.test(r.stderr) && r.stderr.split('\n').length === 2),
      `round ${round}: each loser says why, on one line`,
    );
    const archived = await readFile(join(archiveDir, name));
    const matching = contents.flatMap((bytes, i) => (archived.equals(bytes) ? [i] : []));
    t.same(matching, winners, `round ${round}: the archived file is exactly the winner's contents, never a mix`);
    t.same(await readdir(archiveDir), [name], `round ${round}: no temporary files left`);
    await rm(join(base, `round${round}`), { recursive: true, force: true });
  }
});
