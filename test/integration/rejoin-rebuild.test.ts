// Rejoin by pg_basebackup: asked for (--rebuild), and as the fallback when pg_rewind fails; real clusters, no pgfloat process.
import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, silentLogger, type Logger } from '../../src/log';
import { managerFor } from '../../src/management/node-manager';
import { OLD_DATA_DIR_SUFFIX } from '../../src/management/rejoin';
import { findPgBinaries } from '../../src/postgres/binaries';
import type { LocalNode } from '../../src/sandbox/local-cluster';
import { queryOnce } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { eventually } from '../harness/pgfloat';
import type { ManagementContext } from '../../src/management/types';

function contextFor(password: string, log: Logger = silentLogger): ManagementContext {
  return {
    binaries: findPgBinaries(),
    credentials: { user: 'postgres', password, database: 'postgres' },
    replication: { user: 'postgres', password },
    log,
  };
}

function nodeConfig(node: LocalNode) {
  return { name: node.name, host: node.host, port: node.port, dataDir: node.dataDir, commands: { stop: null, start: null, rejoin: null } };
}

const address = (node: LocalNode) => ({ name: node.name, host: node.host, port: node.port });

/** A pino logger whose JSON lines land in `lines`. */
function capturingLogger(lines: string[]): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return createLogger('debug', sink);
}

t.test('rebuild: true clones the primary with pg_basebackup, keeping the old directory aside', async (t) => {
  t.setTimeout(120_000);
  const password = "s3cret-'pw\\";
  const cluster = await startCluster(t, { password, authMethod: 'scram-sha-256' });
  const [n1, n2] = cluster.nodes;
  const url = (node: LocalNode): string => node.connectionString();
  await queryOnce(url(n1), `create table writes (id int primary key); insert into writes select generate_series(1, 5)`);

  const logLines: string[] = [];
  const manager = managerFor(nodeConfig(n2), contextFor(password, capturingLogger(logLines)), 1)!;
  const progress: string[] = [];
  const method = await manager.rejoin(address(n1), { rebuild: true, timeoutMs: 90_000 }, (m) => progress.push(m));
  t.comment(progress.join('\n'));
  t.equal(method, 'rebuilt', 'pg_basebackup did it');
  t.notOk(progress.some((m) => /pg_rewind of/.test(m)), 'pg_rewind was not tried');
  t.ok(progress.includes('rebuild requested: recreating n2 from pg_basebackup'), 'the progress says why');
  t.ok(progress.includes(`moving ${n2.dataDir} aside to ${n2.dataDir}${OLD_DATA_DIR_SUFFIX}`), 'the old directory is moved aside');
  t.ok(progress.some((m) => /^n2 streams from n1 on timeline 1/.test(m)), 'n2 streams on timeline 1');
  t.ok(existsSync(join(`${n2.dataDir}${OLD_DATA_DIR_SUFFIX}`, 'PG_VERSION')), 'the old data directory is kept');
  t.equal(statSync(n2.dataDir).mode & 0o777, 0o700, 'the new data directory has mode 0700');

  t.same(await queryOnce(url(n2), 'select status from pg_stat_wal_receiver'), [{ status: 'streaming' }], 'n2 streams (it authenticated with the password)');
  t.same(await queryOnce(url(n2), 'show port'), [{ port: String(n2.port) }], 'n2 kept its own port');
  await queryOnce(url(n1), 'insert into writes values (6)');
  await eventually(async () => (await queryOnce(url(n2), 'select count(*)::int as n from writes'))[0]?.n === 6, 'the write to reach n2');
  t.pass('a write on n1 reaches n2');

  const autoConf = readFileSync(join(n2.dataDir, 'postgresql.auto.conf'), 'utf8');
  t.equal(autoConf.match(/^primary_conninfo\s*=/gm)?.length, 1, 'postgresql.auto.conf sets primary_conninfo once');
  const [{ primary_conninfo: conninfo = '' } = {}] = await queryOnce<{ primary_conninfo: string }>(url(n2), 'show primary_conninfo');
  t.match(conninfo, `port='${n1.port}'`, 'primary_conninfo points at n1');
  t.match(conninfo, "application_name='n2'", 'and names n2');

  // A second rebuild replaces the kept directory.
  writeFileSync(join(`${n2.dataDir}${OLD_DATA_DIR_SUFFIX}`, 'marker'), 'from the first rebuild');
  const again: string[] = [];
  t.equal(await manager.rejoin(address(n1), { rebuild: true, timeoutMs: 90_000 }, (m) => again.push(m)), 'rebuilt', 'a second rebuild works');
  t.ok(again.includes(`removing the previous ${n2.dataDir}${OLD_DATA_DIR_SUFFIX}`), 'it says it removes the previous copy');
  t.notOk(existsSync(join(`${n2.dataDir}${OLD_DATA_DIR_SUFFIX}`, 'marker')), 'only one old copy is kept');

  // pg_rewind that cannot connect (here: a wrong password) does not fall back: a pg_basebackup would fail the same way.
  const denied = managerFor(nodeConfig(n2), { ...contextFor(password), replication: { user: 'postgres', password: 'wrong' } }, 1)!;
  const deniedProgress: string[] = [];
  await t.rejects(
    denied.rejoin(address(n1), { rebuild: false, timeoutMs: 60_000 }, (m) => deniedProgress.push(m)),
    /pg_rewind could not connect to n1 as postgres: .*password authentication failed.*; n2 is left stopped, its data directory untouched/,
    'a pg_rewind that cannot log in stops the rejoin',
  );
  t.notOk(deniedProgress.some((m) => /pg_basebackup|aside/.test(m)), 'without moving the data directory aside');
  t.ok(existsSync(join(n2.dataDir, 'PG_VERSION')), "n2's data directory is still there");

  const secrets = [...progress, ...again, ...deniedProgress, ...logLines].filter((line) => line.includes('s3cret'));
  t.same(secrets, [], 'the password appears in no progress message and no log line');
  t.ok(logLines.some((l) => /"node":"n2"/.test(l) && /pg_basebackup of n2/.test(l)), 'the steps are logged with the node name');
});

t.test('pg_rewind failing (no wal_log_hints) falls back to pg_basebackup', async (t) => {
  t.setTimeout(120_000);
  // Without wal_log_hints or data checksums pg_rewind refuses to run: a realistic, reliable failure.
  const cluster = await startCluster(t, { extraConf: { wal_log_hints: 'off' } });
  const [n1, n2] = cluster.nodes;
  await queryOnce(n1.connectionString(), `create table writes (id int primary key, phase text); insert into writes select g, 'before' from generate_series(1, 5) g`);
  await eventually(async () => (await queryOnce(n2.connectionString(), 'select count(*)::int as n from writes').catch(() => []))[0]?.n === 5, 'the rows to reach n2');
  await queryOnce(n2.connectionString(), 'select pg_promote()');
  await queryOnce(n1.connectionString(), `insert into writes values (101, 'diverged on n1')`);
  await queryOnce(n2.connectionString(), `insert into writes values (200, 'on the new primary')`);

  const manager = managerFor(nodeConfig(n1), contextFor(''), 0)!;
  const progress: string[] = [];
  const method = await manager.rejoin(address(n2), { rebuild: false, timeoutMs: 90_000 }, (m) => progress.push(m));
  t.comment(progress.join('\n'));
  t.equal(method, 'rebuilt', 'the fallback rebuilt n1');
  const failed = progress.findIndex((m) => /^pg_rewind failed: target server needs .*wal_log_hints.*; recreating n1 from pg_basebackup$/.test(m));
  t.ok(failed > 0, 'the progress gives pg_rewind\'s reason');
  t.ok(progress.findIndex((m) => /^pg_rewind of n1 from n2/.test(m)) < failed, 'after trying pg_rewind');
  t.ok(progress.findIndex((m) => /^pg_basebackup of n1 from n2/.test(m)) > failed, 'then pg_basebackup');
  t.ok(progress.some((m) => /^n1 streams from n2 on timeline 2/.test(m)), 'n1 streams from n2 on timeline 2');
  t.same(
    await queryOnce(n1.connectionString(), `select id from writes where id > 5 order by id`),
    [{ id: 200 }],
    "n1's diverged row is gone, the new primary's row is there",
  );
  t.same(await queryOnce(n1.connectionString(), 'select pg_is_in_recovery() as r, (select status from pg_stat_wal_receiver) as s'), [{ r: true, s: 'streaming' }], 'n1 is a streaming standby');
  t.ok(existsSync(join(`${n1.dataDir}${OLD_DATA_DIR_SUFFIX}`, 'PG_VERSION')), "n1's diverged data directory is kept aside");
});
