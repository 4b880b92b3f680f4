// FileStateStore: the persisted cluster state, replaced atomically and guarded by a revision check.

import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import t from 'tap';
import { emptyState, type ClusterState } from '../../src/cluster/state';
import { FileStateStore } from '../../src/state/file-store';

async function tempDir(t: tap.Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgfloat-state-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function next(primary: string, epoch: number, extra: Partial<ClusterState> = {}): Omit<ClusterState, 'revision'> {
  return { epoch, primary, systemIdentifier: '7311111111111111111', timeline: epoch + 1, fenced: [], history: [], ...extra };
}

t.test('load of a missing file gives the empty state', async (t) => {
  const dir = await tempDir(t);
  t.same(await new FileStateStore(join(dir, 'not-yet-created')).load(), emptyState());
  t.same(await new FileStateStore(dir).load(), { revision: 0, epoch: 0, fenced: [], history: [] });
});

t.test('compareAndSet with the right revision writes and bumps the revision', async (t) => {
  const dir = join(await tempDir(t), 'nested', 'state'); // created on first write
  const store = new FileStateStore(dir);
  t.equal(store.file, join(dir, 'cluster-state.json'));
  const first = await store.compareAndSet(0, next('n1', 1));
  t.same(first, { ...next('n1', 1), revision: 1 });
  t.same(await store.load(), first, 'read back');
  t.same(JSON.parse(await readFile(store.file, 'utf8')), first, 'on disk');
  const second = await store.compareAndSet(1, next('n2', 2, {
    fenced: ['n1'],
    history: [{ at: '2024-01-01T00:00:00.000Z', epoch: 2, reason: 'primary down', oldPrimary: 'n1', newPrimary: 'n2' }],
  }));
  t.equal(second?.revision, 2);
  const loaded = await store.load();
  t.equal(loaded.revision, 2);
  t.equal(loaded.primary, 'n2');
  t.same(loaded.fenced, ['n1']);
  t.equal(loaded.history.length, 1);
  // A second store on the same directory sees it.
  t.same(await new FileStateStore(dir).load(), loaded);
});

t.test('a revision field in `next` does not override the computed one', async (t) => {
  const store = new FileStateStore(await tempDir(t));
  const written = await store.compareAndSet(0, { ...next('n1', 1), revision: 99 } as ClusterState);
  t.equal(written?.revision, 1);
  t.equal((await store.load()).revision, 1);
});

t.test('compareAndSet with a stale revision resolves undefined and changes nothing', async (t) => {
  const store = new FileStateStore(await tempDir(t));
  await store.compareAndSet(0, next('n1', 1));
  await store.compareAndSet(1, next('n1', 1, { fenced: ['n3'] }));
  const before = await readFile(store.file, 'utf8');
  t.equal(await store.compareAndSet(1, next('n2', 2)), undefined, 'one behind');
  t.equal(await store.compareAndSet(0, next('n2', 2)), undefined, 'two behind');
  t.equal(await store.compareAndSet(5, next('n2', 2)), undefined, 'ahead');
  t.equal(await readFile(store.file, 'utf8'), before, 'file unchanged, byte for byte');
  // And on a missing file, only revision 0 is current.
  const fresh = new FileStateStore(await tempDir(t));
  t.equal(await fresh.compareAndSet(1, next('n1', 1)), undefined);
  t.same(await fresh.load(), emptyState());
});

t.test('concurrent compareAndSets from one store: exactly one wins', async (t) => {
  const store = new FileStateStore(await tempDir(t));
  const candidates = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8'];
  const results = await Promise.all(candidates.map((name) => store.compareAndSet(0, next(name, 1))));
  const winners = results.filter((r) => r !== undefined);
  t.equal(winners.length, 1, 'one winner');
  const loaded = await store.load();
  t.equal(loaded.revision, 1);
  t.equal(loaded.primary, winners[0]!.primary, 'the file holds the winner');
  // Chained by revision, all of them succeed in turn.
  const chained = await Promise.all([store.compareAndSet(1, next('a', 2)), store.compareAndSet(2, next('b', 3)), store.compareAndSet(3, next('c', 4))]);
  t.same(chained.map((r) => r?.revision), [2, 3, 4]);
  t.equal((await store.load()).primary, 'c');
});

t.test('two stores in one process writing at once do not break each other\'s writes', async (t) => {
  // E.g. a second Pgfloat instance in the same process (tests, an embedding application) on one state dir.
  const dir = await tempDir(t);
  const a = new FileStateStore(dir);
  const b = new FileStateStore(dir);
  const settle = (p: Promise<ClusterState | undefined>): Promise<ClusterState | undefined | Error> =>
    p.catch((err: Error) => err);
  let errors = 0;
  let firstError = '';
  for (let round = 0; round < 20; round++) {
    const revision = (await a.load()).revision;
    const [ra, rb] = await Promise.all([
      settle(a.compareAndSet(revision, next('a', round))),
      settle(b.compareAndSet(revision, next('b', round))),
    ]);
    for (const r of [ra, rb]) {
      if (r instanceof Error) {
        errors++;
        firstError ||= r.message;
      }
    }
  }
  t.equal(errors, 0, `no write fails (first error: ${firstError || 'none'})`);
});

t.test('concurrent compareAndSets from two processes on one directory: exactly one wins', async (t) => {
  // The lock file must serialise writers in different processes.
  const dir = await tempDir(t);
  const storeModule = join(__dirname, '..', '..', 'src', 'state', 'file-store.js');
  const script = `
    const { FileStateStore } = require(${JSON.stringify(storeModule)});
    const store = new FileStateStore(process.argv[1]);
    const name = process.argv[2];
    require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
      const revision = Number(line);
      store.compareAndSet(revision, { epoch: revision + 1, primary: name, fenced: [], history: [] }).then(
        (r) => process.stdout.write(JSON.stringify({ won: r !== undefined }) + '\\n'),
        (e) => process.stdout.write(JSON.stringify({ won: false, error: e.message }) + '\\n'),
      );
    });
    process.stdout.write('ready\\n');
  `;
  const children = ['p1', 'p2'].map((name) => {
    const child = spawn(process.execPath, ['-e', script, dir, name], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! });
    const queue: string[] = [];
    const waiters: Array<(line: string) => void> = [];
    lines.on('line', (line) => {
      const w = waiters.shift();
      if (w) w(line);
      else queue.push(line);
    });
    const nextLine = (): Promise<string> =>
      new Promise((resolve) => {
        const queued = queue.shift();
        if (queued !== undefined) resolve(queued);
        else waiters.push(resolve);
      });
    return { child, nextLine };
  });
  t.teardown(() => children.forEach(({ child }) => child.kill()));
  for (const c of children) t.equal(await c.nextLine(), 'ready', 'child process ready');
  const store = new FileStateStore(dir);
  let bothWon = 0;
  let noneWon = 0;
  const rounds = 10;
  for (let round = 0; round < rounds; round++) {
    const revision = (await store.load()).revision;
    for (const c of children) c.child.stdin!.write(`${revision}\n`);
    const results = (await Promise.all(children.map((c) => c.nextLine()))).map((l) => JSON.parse(l) as { won: boolean; error?: string });
    const wins = results.filter((r) => r.won).length;
    if (wins === 2) bothWon++;
    if (wins === 0) noneWon++;
  }
  t.equal(noneWon, 0, 'every round has a winner');
  t.equal(bothWon, 0, `never two winners for one revision (both won in ${bothWon} of ${rounds} rounds)`);
});

t.test('a failed write does not wedge the store', async (t) => {
  const dir = await tempDir(t);
  const store = new FileStateStore(dir);
  // A directory where the state file should be makes the read fail; the lock must still be released.
  await mkdir(`${store.file}/x`, { recursive: true });
  await t.rejects(store.compareAndSet(0, next('n1', 1)));
  await rm(store.file, { recursive: true });
  const ok = await store.compareAndSet(0, next('n1', 1));
  t.equal(ok?.revision, 1, 'the next write goes through');
});

t.test('no temp files are left behind', async (t) => {
  const dir = await tempDir(t);
  const store = new FileStateStore(dir);
  let revision = 0;
  for (let i = 0; i < 5; i++) {
    const written = await store.compareAndSet(revision, next(`n${i}`, i + 1));
    revision = written!.revision;
  }
  await Promise.all([store.compareAndSet(revision, next('x', 9)), store.compareAndSet(revision, next('y', 9))]);
  t.same(await readdir(dir), ['cluster-state.json']);
});

t.test('a corrupt JSON file gives an error naming the file', async (t) => {
  const dir = await tempDir(t);
  const store = new FileStateStore(dir);
  await writeFile(store.file, '{"revision": 3, "epoch": ');
  await t.rejects(store.load(), { message: new RegExp(`${store.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*not valid JSON`) });
  // compareAndSet refuses too, and leaves the file alone for a human to look at.
  await t.rejects(store.compareAndSet(3, next('n1', 1)), { message: /cluster-state\.json/ });
  t.equal(await readFile(store.file, 'utf8'), '{"revision": 3, "epoch": ');
});

t.test('an unreadable state path gives an error naming the file', async (t) => {
  const dir = await tempDir(t);
  const store = new FileStateStore(dir);
  await mkdir(store.file); // EISDIR on read
  await t.rejects(store.load(), { message: /cannot read cluster state .*cluster-state\.json/ });
});
