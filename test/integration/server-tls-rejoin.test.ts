// Failover and a managed rejoin on servers that take only TLS, under serverTls verify-full: pgfloat's
// heartbeats, promotion, pg_rewind and the rejoined standby's replication all run verified.

import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log';
import { managerFor } from '../../src/management/node-manager';
import type { ManagementContext } from '../../src/management/types';
import { findPgBinaries } from '../../src/postgres/binaries';
import { connectClient, queryOnce } from '../harness/clients';
import { operationResult, postOperation, TEST_TOKEN } from '../harness/cli';
import { startCluster } from '../harness/cluster';
import { crashServer, nodeStatus, tryQuery } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { makeTestCa } from '../harness/test-ca';

t.test('hostssl-only servers under verify-full: failover, writes through pgfloat, a rejoin by pg_rewind over TLS, and a switchover back', async (t) => {
  t.setTimeout(240_000);
  const ca = await makeTestCa(t);
  const server = await ca.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const cluster = await startCluster(t, { tls: { ...server, ca: ca.ca, hostsslOnly: true } });
  const [n1, n2] = cluster.nodes;
  const proxy = await startPgfloat(
    t,
    cluster,
    { serverTls: { mode: 'verify-full', ca: ca.ca }, admin: { listen: '127.0.0.1:0', token: TEST_TOKEN } },
    { managed: true },
  );
  await eventually(() => proxy.instance.status().standbys.includes('n2'), 'n2 to be routed as a standby');
  await queryOnce(proxy.readWriteUrl(), 'create table tls_writes (id int primary key, phase text)');
  await queryOnce(proxy.readWriteUrl(), "insert into tls_writes values (1, 'before the failover')");
  await eventually(async () => (await tryQuery(n2.connectionString(), 'select 1 from tls_writes where id = 1'))?.length === 1, 'row 1 to reach n2');

  await crashServer(n1);
  await eventually(() => proxy.instance.status().primary === 'n2', 'n2 to be promoted', 60_000);
  t.same(nodeStatus(proxy.instance.status(), 'n2').tls, { mode: 'verify-full', state: 'encrypted', error: null }, 'the new primary is verified');
  t.not(nodeStatus(proxy.instance.status(), 'n1').tls.state, 'failed', 'the dead n1 is not reported as a TLS failure');
  await queryOnce(proxy.readWriteUrl(), "insert into tls_writes values (2, 'after the failover')");
  t.same(await queryOnce(n2.connectionString(), 'select id from tls_writes order by id'), [{ id: 1 }, { id: 2 }], 'writes through pgfloat reach n2 after the failover');

  const started = await postOperation(proxy.adminUrl, '/rejoin/n1', {});
  t.equal(started.status, 202, 'the rejoin is accepted');
  const op = await operationResult(proxy.adminUrl, String(started.json.operation), 180_000);
  t.comment(op.steps.map((s) => s.message).join('\n'));
  t.equal(op.state, 'succeeded', `the rejoin succeeded (${op.result})`);
  t.match(op.result, /rewound/, 'by pg_rewind');
  t.ok(op.steps.some((s) => /^pg_rewind of n1 from n2 \(127\.0\.0\.1:\d+, sslmode verify-full\)/.test(s.message)), 'pg_rewind ran with verify-full');

  const [receiver] = await queryOnce<{ status: string; conninfo: string }>(n1.connectionString(), 'select status, conninfo from pg_stat_wal_receiver');
  t.equal(receiver?.status, 'streaming', 'n1 streams');
  t.match(receiver?.conninfo, /sslmode=verify-full/, "n1's primary_conninfo verifies the primary's certificate");
  t.match(receiver?.conninfo, new RegExp(`sslrootcert=${ca.ca.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), '... against the configured CA');
  t.same(
    await queryOnce(n2.connectionString(), 'select r.application_name, s.ssl from pg_stat_replication r join pg_stat_ssl s using (pid)'),
    [{ application_name: 'n1', ssl: true }],
    'n2 sees n1 streaming over TLS',
  );

  await eventually(() => proxy.instance.status().standbys.includes('n1'), 'n1 to be routed as a standby again', 60_000);
  t.same(nodeStatus(proxy.instance.status(), 'n1').tls, { mode: 'verify-full', state: 'encrypted', error: null }, 'the rejoined n1 is verified');
  await eventually(async () => (await tryQuery(proxy.readOnlyUrl(), 'select 1 from tls_writes where id = 2'))?.length === 1, 'row 2 to be read from n1 through pgfloat');
  t.pass('a read-only client through pgfloat reads the write made after the failover from the rejoined n1');

  // A switchover back: n2 rejoins by pg_rewind over TLS, and an idle session moves to n1 on a verified leg.
  const session = await connectClient(proxy.readWriteUrl());
  t.teardown(() => session.end());
  await session.query("SET work_mem = '6MB'");
  const switched = await postOperation(proxy.adminUrl, '/switchover', {});
  t.equal(switched.status, 202, 'the switchover is accepted');
  const switchover = await operationResult(proxy.adminUrl, String(switched.json.operation), 180_000);
  t.equal(switchover.state, 'succeeded', `the switchover succeeded (${switchover.result})`);
  t.match(switchover.result, /n2 follows it as a standby \(rewound\)/, 'n2 rejoined by pg_rewind');
  const { rows } = await session.query<{ port: number; w: string; ssl: boolean }>(
    "select inet_server_port() as port, current_setting('work_mem') as w, (select ssl from pg_stat_ssl where pid = pg_backend_pid()) as ssl",
  );
  t.same(rows, [{ port: n1.port, w: '6MB', ssl: true }], 'the idle session moved to n1 with its setting, over TLS');
  await queryOnce(proxy.readWriteUrl(), "insert into tls_writes values (3, 'after the switchover')");
  t.same(await queryOnce(n1.connectionString(), 'select count(*)::int as n from tls_writes'), [{ n: 3 }], 'writes go to n1');
});

t.test("operators' hooks get the serverTls of the server they talk to as libpq's PGSSL* variables", async (t) => {
  t.setTimeout(120_000);
  const ca = await makeTestCa(t);
  const server = await ca.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const cluster = await startCluster(t, { tls: { ...server, ca: ca.ca, hostsslOnly: true } });
  const [n1, n2] = cluster.nodes;
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-hooks-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const record = (name: string): string => `env | grep '^PGSSL' > ${dir}/${name}.env; true`;
  const ctx: ManagementContext = {
    binaries: findPgBinaries(),
    credentials: { user: 'postgres', password: '', database: 'postgres' },
    replication: { user: 'postgres', password: '' },
    log: silentLogger,
    serverTls: { mode: 'verify-full', ca: ca.ca, cert: null, key: null },
  };
  // n2 already streams from n1: the rejoin hook only records what it was given.
  const manager = managerFor(
    { name: n2.name, host: n2.host, port: n2.port, dataDir: n2.dataDir, commands: { stop: record('stop'), start: null, rejoin: record('rejoin') } },
    ctx,
    1,
  )!;
  // pgfloat's own environment may carry libpq settings: they must not mix with the server's.
  process.env.PGSSLCERT = join(dir, 'pgfloat-own.crt');
  t.teardown(() => delete process.env.PGSSLCERT);
  await manager.stop(() => undefined);
  t.same(envOf(join(dir, 'stop.env')), { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca.ca }, "the stop hook gets the node's own serverTls");
  const primary = { name: n1.name, host: n1.host, port: n1.port, tls: { mode: 'require' as const, ca: null, cert: null, key: null } };
  t.equal(await manager.rejoin(primary, { rebuild: false, timeoutMs: 60_000 }, () => undefined), 'command', 'the rejoin hook ran, and n2 was seen streaming over verify-full');
  t.same(envOf(join(dir, 'rejoin.env')), { PGSSLMODE: 'require' }, "the rejoin hook gets the primary's, and none of pgfloat's own PGSSL*");
});

function envOf(path: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}
