// Rejoin of a diverged former primary with pg_rewind: the managed-node module against a real primary + standby, no pgfloat process.
import t from 'tap';
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../src/log';
import { managerFor } from '../../src/management/node-manager';
import { findPgBinaries } from '../../src/postgres/binaries';
import { unprivilegedUser } from '../../src/system/os-user';
import type { LocalCluster, LocalNode } from '../../src/sandbox/local-cluster';
import { queryOnce } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { crashServer } from '../harness/faults';
import { eventually } from '../harness/pgfloat';
import type { ManagementContext } from '../../src/management/types';

function contextFor(password = ''): ManagementContext {
  return {
    binaries: findPgBinaries(),
    credentials: { user: 'postgres', password, database: 'postgres' },
    replication: { user: 'postgres', password },
    log: silentLogger,
  };
}

function nodeConfig(node: LocalNode, extra: Partial<{ dataDir: string | null }> = {}) {
  return { name: node.name, host: node.host, port: node.port, dataDir: node.dataDir, commands: { stop: null, start: null, rejoin: null }, ...extra };
}

/** Paths under `dir` (itself included) not owned by `uid`. */
function notOwnedBy(dir: string, uid: number): string[] {
  const wrong = lstatSync(dir).uid === uid ? [] : [dir];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath ?? entry.path, entry.name);
    if (lstatSync(path).uid !== uid) wrong.push(path);
  }
  return wrong;
}

/** Indexes of the first message matching each pattern, in order; -1 for one not found after the previous. */
function stepsInOrder(progress: readonly string[], patterns: readonly RegExp[]): number[] {
  let from = 0;
  return patterns.map((p) => {
    const i = progress.findIndex((m, idx) => idx >= from && p.test(m));
    if (i >= 0) from = i + 1;
    return i;
  });
}

/** A primary + standby whose histories diverged: n2 promoted, then writes on both (101-103 on n1 only, 200 on n2). */
async function divergedCluster(t: Parameters<typeof startCluster>[0]): Promise<LocalCluster> {
  const cluster = await startCluster(t);
  const [n1, n2] = cluster.nodes;
  await queryOnce(n1.connectionString(), 'create table writes (id int primary key, phase text)');
  await queryOnce(n1.connectionString(), `insert into writes select g, 'before' from generate_series(1, 10) g`);
  await eventually(async () => (await queryOnce(n2.connectionString(), 'select count(*)::int as n from writes').catch(() => []))[0]?.n === 10, 'the rows to reach n2');
  // n2 is promoted while n1 goes on as a primary: from here the two histories diverge.
  await queryOnce(n2.connectionString(), 'select pg_promote()');
  for (let id = 101; id <= 103; id++) await queryOnce(n1.connectionString(), `insert into writes values (${id}, 'diverged on n1')`);
  await queryOnce(n2.connectionString(), `insert into writes values (200, 'on the new primary')`);
  return cluster;
}

t.test('a diverged former primary is rewound and streams from the new primary on its timeline', async (t) => {
  t.setTimeout(120_000);
  const cluster = await divergedCluster(t);
  const [n1, n2] = cluster.nodes;

  const manager = managerFor(nodeConfig(n1), contextFor(), 0);
  if (manager === undefined) throw new Error('n1 has a dataDir: it must be managed');
  t.equal(manager.kind, 'local');
  t.equal(manager.node, 'n1');
  const progress: string[] = [];
  const method = await manager.rejoin({ name: n2.name, host: n2.host, port: n2.port }, { rebuild: false, timeoutMs: 90_000 }, (m) => progress.push(m));
  t.comment(progress.join('\n'));
  t.equal(method, 'rewound', 'pg_rewind did it');

  const steps = stepsInOrder(progress, [
    /^stopping n1/,
    /^CHECKPOINT on n2 so pg_rewind sees the new timeline/,
    /^pg_rewind of n1 from n2/,
    /^pg_rewind of n1 done: .*diverged at/,
    /^configuring n1 as a standby of n2/,
    /^starting n1 as a standby of n2/,
    /^waiting for n1 to stream from n2 on timeline 2$/,
    /^n1 streams from n2 on timeline 2/,
  ]);
  t.notOk(steps.includes(-1), `every step was reported, in order (${steps.join(', ')})`);
  t.notOk(progress.some((m) => /pg_basebackup/.test(m)), 'no pg_basebackup was needed');

  // Read after the rejoin's CHECKPOINT: until then a freshly promoted primary's control file shows the old timeline.
  const [{ tli: newTimeline } = { tli: 0 }] = await queryOnce<{ tli: number }>(n2.connectionString(), 'select timeline_id as tli from pg_control_checkpoint()');
  t.equal(newTimeline, 2, 'n2 is on timeline 2');
  t.same(await queryOnce(n1.connectionString(), 'select pg_is_in_recovery() as r'), [{ r: true }], 'n1 runs in recovery');
  t.same(
    await queryOnce(n1.connectionString(), 'select status, received_tli, sender_port from pg_stat_wal_receiver'),
    [{ status: 'streaming', received_tli: newTimeline, sender_port: n2.port }],
    'n1 streams from n2 on the new timeline',
  );
  t.same(await queryOnce(n1.connectionString(), 'show port'), [{ port: String(n1.port) }], 'n1 kept its own port');
  t.same(await queryOnce(n1.connectionString(), 'show cluster_name'), [{ cluster_name: 'n1' }], 'n1 kept its own cluster_name');
  t.same(
    await queryOnce(n2.connectionString(), `select application_name, state from pg_stat_replication`),
    [{ application_name: 'n1', state: 'streaming' }],
    'n2 sees n1 streaming',
  );
  t.same(
    await queryOnce(n1.connectionString(), `select id, phase from writes where id > 10 order by id`),
    [{ id: 200, phase: 'on the new primary' }],
    "n1's diverged rows are gone, the new primary's row is there",
  );
  await queryOnce(n2.connectionString(), `insert into writes values (300, 'after the rejoin')`);
  await eventually(async () => (await queryOnce(n1.connectionString(), 'select count(*)::int as n from writes where id = 300'))[0]?.n === 1, 'the write to reach n1', 30_000);
  t.pass('a write on n2 after the rejoin reaches n1');

  t.ok(existsSync(`${n1.dataDir}.log`), 'the server log is beside the data directory');
  const user = unprivilegedUser();
  if (user !== undefined) t.same(notOwnedBy(n1.dataDir, user.uid), [], "every file in n1's data directory belongs to the server's user");

  // Rejoining a node that already streams is harmless: pg_rewind finds nothing to do.
  const again: string[] = [];
  t.equal(await manager.rejoin({ name: n2.name, host: n2.host, port: n2.port }, { rebuild: false, timeoutMs: 60_000 }, (m) => again.push(m)), 'rewound', 'a second rejoin works too');
  t.ok(again.some((m) => /no rewind required/.test(m)), 'and pg_rewind says no rewind was required');

  // The manager refuses a rejoin to itself, naming the node.
  await t.rejects(manager.rejoin({ name: 'n1', host: n1.host, port: n1.port }, { rebuild: false }, () => undefined), /n1 cannot rejoin itself/);
  // A "primary" in recovery is refused before anything is done to the node.
  const n2Manager = managerFor(nodeConfig(n2), contextFor(), 1)!;
  await t.rejects(
    n2Manager.rejoin({ name: n1.name, host: n1.host, port: n1.port }, { rebuild: false }, () => undefined),
    /rejoin of n2 failed: primary n1 \(127\.0\.0\.1:\d+\): it is in recovery/,
    'rejoining a standby is refused',
  );
  t.equal(await n2.isRunning(), true, 'and n2 was left running');
});

t.test('a crashed former primary is rewound too: pg_rewind runs its crash recovery first', async (t) => {
  t.setTimeout(120_000);
  const cluster = await divergedCluster(t);
  const [n1, n2] = cluster.nodes;
  await crashServer(n1);
  const manager = managerFor(nodeConfig(n1), contextFor(), 0)!;
  const progress: string[] = [];
  const method = await manager.rejoin({ name: n2.name, host: n2.host, port: n2.port }, { rebuild: false, timeoutMs: 90_000 }, (m) => progress.push(m));
  t.comment(progress.join('\n'));
  t.equal(method, 'rewound', 'pg_rewind did it');
  t.ok(progress.includes('n1 is not running'), 'the stop step found n1 down');
  t.same(
    await queryOnce(n1.connectionString(), `select id from writes where id > 10 order by id`),
    [{ id: 200 }],
    "n1's diverged rows are gone, the new primary's row is there",
  );
  t.same(await queryOnce(n1.connectionString(), 'select status from pg_stat_wal_receiver'), [{ status: 'streaming' }], 'n1 streams');
});
