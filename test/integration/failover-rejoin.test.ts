// The primary crashes, pgfloat fails over to n2; an operator then rewinds n1 with pg_rewind and restarts it as a standby of n2, as the PostgreSQL docs describe: pgfloat unfences it and routes read-only clients to it again.
import t from 'tap';
import { appendFileSync, chmodSync, chownSync, lstatSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPgBinaries } from '../../src/postgres/binaries';
import { unprivilegedUser } from '../../src/system/os-user';
import { toolEnvironment } from '../../src/system/environment';
import { runChecked } from '../../src/system/process';
import type { LocalCluster, LocalNode } from '../../src/sandbox/local-cluster';
import { connectClient, queryOnce, type ObservedClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { crashServer, isAlive, metricValue, nodeStatus, serverPortOf, sleep, tryQuery } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';

const LONG = 60_000;

/** Resolves to whether `check` became true within `timeoutMs`, so the outcome can be asserted (and marked todo). */
async function settles(check: () => boolean | Promise<boolean>, what: string, timeoutMs = LONG): Promise<boolean> {
  return eventually(check, what, timeoutMs).then(
    () => true,
    () => false,
  );
}

/** Waits until nothing runs on `node`'s data directory any more: no postmaster, no pg_ctl status success. */
async function waitStopped(node: LocalNode, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = node.postmasterPid();
    if (pid === undefined || !isAlive(pid)) {
      if (!(await node.isRunning())) return;
    }
    if (Date.now() > deadline) throw new Error(`${node.name} is still running (postmaster ${pid})`);
    await sleep(50);
  }
}

/** A file written by us (root) in a data directory must belong to the user that runs PostgreSQL. */
function ownByServerUser(path: string): void {
  const user = unprivilegedUser();
  if (user !== undefined) chownSync(path, user.uid, user.gid);
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

/**
 * Rejoins the crashed former primary `target` as a standby of `source`, by hand: pg_rewind against
 * the running new primary, standby.signal, primary_conninfo, then a start. Returns what was done.
 */
async function rewindAndRejoin(cluster: LocalCluster, target: LocalNode, source: LocalNode): Promise<{ cleanStartStop: boolean; rewind: string; misowned: string[] }> {
  const binaries = findPgBinaries();
  if (binaries === undefined) throw new Error('no PostgreSQL binaries');
  await waitStopped(target);
  // pg_rewind reads the source's timeline from its control file, which a promotion updates only at
  // its first checkpoint, one the server runs in the background: the docs say to CHECKPOINT first,
  // else pg_rewind may see both on timeline 1 and report "no rewind required".
  await queryOnce(source.connectionString(), 'CHECKPOINT');
  const rewind = (): Promise<string> =>
    runChecked(
      binaries.path('pg_rewind'),
      [`--target-pgdata=${target.dataDir}`, `--source-server=host=127.0.0.1 port=${source.port} user=postgres dbname=postgres`],
      // The unprivileged user's home may be unreadable: libpq looks there for .pgpass.
      { user: unprivilegedUser(), env: toolEnvironment({ HOME: cluster.baseDir }), timeoutMs: 120_000 },
    );
  let cleanStartStop = false;
  let run: string;
  try {
    run = await rewind();
  } catch (err) {
    // pg_rewind 13+ finishes the target's crash recovery itself (single-user mode); an older one, or
    // --no-ensure-shutdown, wants a cleanly shut down target: start it, then stop it with 'fast'.
    if (!/shut down cleanly/i.test((err as Error).message)) throw err;
    cleanStartStop = true;
    await target.start(); // briefly a primary on the old timeline: still fenced, pgfloat fences it again if it sees it
    await target.stop('fast');
    await waitStopped(target);
    run = await rewind();
  }

  const signal = join(target.dataDir, 'standby.signal');
  writeFileSync(signal, '');
  chmodSync(signal, 0o600);
  ownByServerUser(signal);
  // pg_rewind copied the source's configuration, its port and primary_conninfo included: read last, these win.
  const autoConf = join(target.dataDir, 'postgresql.auto.conf');
  appendFileSync(
    autoConf,
    `\n# rejoined as a standby of ${source.name}\n` +
      `primary_conninfo = 'host=127.0.0.1 port=${source.port} user=postgres application_name=${target.name}'\n` +
      `port = ${target.port}\n`,
  );
  ownByServerUser(autoConf);
  const user = unprivilegedUser();
  const misowned = user === undefined ? [] : notOwnedBy(target.dataDir, user.uid);
  await target.start();
  return { cleanStartStop, rewind: run.trim(), misowned };
}

t.test('SIGKILL of the primary, failover, then the old primary rewound and rejoined as a standby', async (t) => {
  // The runner kills a file that outlives its timeout without running teardowns: a subtest
  // timeout ends the test first, and its teardowns stop the servers.
  t.setTimeout(240_000);
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const [n1, n2] = cluster.nodes;
  const clients: ObservedClient[] = [];
  t.teardown(async () => {
    for (const c of clients.splice(0)) await c.end().catch(() => undefined);
  });
  const rowsOn = async (node: LocalNode, where: string): Promise<number | undefined> =>
    (await tryQuery<{ n: number }>(node.connectionString(), `select count(*)::int as n from writes where ${where}`))?.[0]?.n;

  const setup = await connectClient(proxy.readWriteUrl());
  await setup.query('create table writes (id int primary key, phase text)');
  await setup.query(`insert into writes select g, 'before' from generate_series(1, 10) g`);
  await setup.end();
  await eventually(async () => (await rowsOn(n2, 'true')) === 10, 'the rows to reach n2');

  // ---- the crash and the failover --------------------------------------------------------
  await crashServer(n1); // SIGKILL, then every process of n1 gone
  await eventually(() => proxy.instance.status().primary === 'n2', 'failover to n2', LONG);
  let status = proxy.instance.status();
  t.equal(status.epoch, 2, 'epoch 2 after the failover');
  t.ok(nodeStatus(status, 'n1').fenced, 'n1 is fenced');
  t.equal(status.degenerate, true, 'the cluster is degenerate: one server');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_degenerate'), 1, 'metrics: pgfloat_degenerate 1');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_fenced', { node: 'n1' }), 1, 'metrics: pgfloat_node_fenced{node="n1"} 1');

  // Writes after the failover: n1 never saw them, it must get them from n2 once rejoined.
  const writer = await connectClient(proxy.readWriteUrl());
  clients.push(writer);
  t.equal(await serverPortOf(writer), n2.port, 'writes go to n2');
  await writer.query(`insert into writes select g, 'after failover' from generate_series(11, 20) g`);
  // No standby left: read-only clients fall back to the primary (readOnly.fallbackToPrimary, on by default).
  const fallback = await connectClient(proxy.readOnlyUrl());
  t.equal(await serverPortOf(fallback), n2.port, 'while n1 is out, a read-only client falls back to n2');
  await fallback.end();

  // ---- the rejoin, by hand ---------------------------------------------------------------
  const rejoin = await rewindAndRejoin(cluster, n1, n2);
  t.comment(`pg_rewind${rejoin.cleanStartStop ? ' (after a start and a fast stop of n1)' : ''}: ${rejoin.rewind.split('\n').slice(-3).join(' | ')}`);
  t.notMatch(rejoin.rewind, /no rewind required/, 'pg_rewind found the divergence and rewound n1');
  t.same(rejoin.misowned, [], "every file in n1's data directory belongs to the user that runs PostgreSQL");
  t.same(await tryQuery(n1.connectionString(), 'select pg_is_in_recovery() as r'), [{ r: true }], 'n1 runs in recovery');

  const streaming = await settles(async () => {
    const rows = await tryQuery<{ n: number }>(
      n2.connectionString(),
      `select count(*)::int as n from pg_stat_replication where state = 'streaming' and application_name = 'n1'`,
    );
    return rows?.[0]?.n === 1;
  }, 'n1 to stream from n2');
  t.ok(streaming, 'n1 streams from n2 (pg_stat_replication on n2)');
  if (!streaming) {
    t.comment(`n1 does not stream; the end of its log:\n${n1.logTail(15)}`);
    t.ok(nodeStatus(proxy.instance.status(), 'n1').fenced, 'a standby that does not follow n2 stays fenced');
    return;
  }
  t.same(await tryQuery(n2.connectionString(), 'select count(*)::int as n from pg_stat_replication'), [{ n: 1 }], 'exactly one row in pg_stat_replication on n2');
  t.same(
    await tryQuery(n1.connectionString(), `select status, sender_port from pg_stat_wal_receiver`),
    [{ status: 'streaming', sender_port: n2.port }],
    'n1 WAL receiver streams from n2 (pg_stat_wal_receiver)',
  );
  const caughtUp = await settles(async () => (await rowsOn(n1, `phase = 'after failover'`)) === 10, 'the writes made after the failover to reach n1', 30_000);
  t.ok(caughtUp, 'n1 received the writes made on n2 after the failover');

  // ---- pgfloat takes n1 back -------------------------------------------------------------
  const unfenced = await settles(() => !nodeStatus(proxy.instance.status(), 'n1').fenced, 'pgfloat to unfence n1');
  t.ok(unfenced, 'pgfloat unfences n1');
  // Once unfenced, the rest follows within a heartbeat or two; if not, there is nothing to wait for.
  const follow = unfenced ? LONG : 0;
  const whole = await settles(() => !proxy.instance.status().degenerate, 'the cluster to stop being degenerate', follow);
  t.ok(whole, 'the cluster is no longer degenerate');
  await settles(() => proxy.instance.status().standbys.includes('n1'), 'n1 to be routed as a standby', follow);
  status = proxy.instance.status();
  const n1Status = nodeStatus(status, 'n1');
  t.equal(n1Status.fenced, false, 'status: n1 fenced false');
  t.equal(n1Status.roguePrimary, false, 'status: n1 is not a rogue primary');
  t.equal(n1Status.health, 'up', 'status: n1 is up');
  t.equal(n1Status.role, 'standby', 'status: n1 is a standby');
  t.equal(n1Status.walReceiver, 'streaming', 'status: n1 WAL receiver streaming');
  t.equal(n1Status.timeline, 2, 'status: n1 is on timeline 2');
  t.equal(status.degenerate, false, 'status: degenerate false');
  t.equal(status.degenerateSince, null, 'status: degenerateSince null');
  t.equal(status.epoch, 2, 'status: epoch stays 2 (a rejoin is no failover)');
  t.equal(status.primary, 'n2', 'status: n2 is still the primary');
  t.equal(status.phase, 'steady', 'status: phase steady');
  t.same(status.standbys, ['n1'], 'status: n1 is the standby routed to');
  t.equal(status.lastFailover?.newPrimary, 'n2', 'status: the last failover is still the one to n2');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_degenerate'), 0, 'metrics: pgfloat_degenerate 0');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_fenced', { node: 'n1' }), 0, 'metrics: pgfloat_node_fenced{node="n1"} 0');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_fenced', { node: 'n2' }), 0, 'metrics: pgfloat_node_fenced{node="n2"} 0');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n1' }), 0, 'metrics: no rogue-primary alert for n1');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_epoch'), 2, 'metrics: pgfloat_epoch 2');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_verified_primary', { node: 'n2' }), 1, 'metrics: n2 is the verified primary');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_verified_primary', { node: 'n1' }), 0, 'metrics: n1 is not');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_role', { node: 'n1', role: 'standby' }), 1, 'metrics: n1 has the standby role');

  // ---- clients ---------------------------------------------------------------------------
  // fallbackToPrimary is on (the default), but read-only clients round-robin between healthy
  // standbys first: with n1 the only one, every one of them lands on n1.
  t.equal(proxy.config.readOnly.fallbackToPrimary, true, 'readOnly.fallbackToPrimary is on');
  const readers: ObservedClient[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await connectClient(proxy.readOnlyUrl());
    clients.push(c);
    readers.push(c);
  }
  const readPorts = await Promise.all(readers.map((c) => serverPortOf(c)));
  t.ok(readPorts.includes(n1.port), `at least one read-only client reaches n1 again (server ports ${readPorts.join(', ')}; n1 ${n1.port}, n2 ${n2.port})`);
  t.same(readPorts, readPorts.map(() => n1.port), 'every read-only client reaches n1, the only standby');

  const writers: ObservedClient[] = [writer];
  for (let i = 0; i < 2; i++) {
    const c = await connectClient(proxy.readWriteUrl());
    clients.push(c);
    writers.push(c);
  }
  const writePorts = await Promise.all(writers.map((c) => serverPortOf(c)));
  t.same(writePorts, writePorts.map(() => n2.port), 'every read-write client is on n2, the old one included');

  await writers[1]!.query(`insert into writes values (100, 'after rejoin')`);
  const replicated = await settles(async () => (await rowsOn(n1, 'id = 100')) === 1, 'the row written after the rejoin to reach n1');
  t.ok(replicated, 'a row written through pgfloat after the rejoin is replicated to n1');
  const onN1 = readers.filter((_, i) => readPorts[i] === n1.port);
  if (onN1.length > 0) {
    const seen = await onN1[0]!.query<{ n: number }>(`select count(*)::int as n from writes where id = 100`);
    t.equal(seen.rows[0]?.n, 1, 'a read-only client through pgfloat, on n1, sees it');
    const refused = await onN1[0]!.query(`insert into writes values (101, 'through read-only')`).then(
      () => undefined,
      (err: Error & { code?: string }) => err.code,
    );
    t.equal(refused, '25006', 'a write from that read-only client fails: n1 is a standby (read_only_sql_transaction)');
  }
  t.same(await tryQuery(n1.connectionString(), 'select count(*)::int as n from writes'), [{ n: 21 }], 'n1 holds every row: 10 before, 10 after the failover, 1 after the rejoin');

  status = proxy.instance.status();
  t.equal(status.epoch, 2, 'still epoch 2 at the end');
  t.equal(status.primary, 'n2', 'still n2 as primary at the end');
  t.notOk(nodeStatus(status, 'n1').fenced, 'n1 still unfenced at the end');

  for (const c of clients.splice(0)) await c.end();
});
