// A node managed through nodes[].commands hooks: the environment they get, failing, slow and missing hooks; a real standby, no pgfloat process.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/log';
import { managerFor } from '../../src/management/node-manager';
import { findPgBinaries } from '../../src/postgres/binaries';
import { unprivilegedUser } from '../../src/system/os-user';
import type { LocalNode } from '../../src/sandbox/local-cluster';
import { queryOnce } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import type { ManagementContext } from '../../src/management/types';

const ctx = (over: Partial<ManagementContext> = {}): ManagementContext => ({
  binaries: findPgBinaries(),
  credentials: { user: 'postgres', password: '', database: 'postgres' },
  replication: { user: 'postgres', password: '' },
  log: silentLogger,
  ...over,
});

type Commands = { stop: string | null; start: string | null; rejoin: string | null };

const nodeWith = (node: LocalNode, commands: Partial<Commands>) => ({
  name: node.name,
  host: node.host,
  port: node.port,
  dataDir: node.dataDir,
  commands: { stop: null, start: null, rejoin: null, ...commands },
});

/** The PGFLOAT_* lines a hook wrote with `env`, as an object. */
function envFile(path: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

t.test('hooks get the node and primary in their environment; failing, slow and missing hooks are errors that say so', async (t) => {
  t.setTimeout(120_000);
  const cluster = await startCluster(t);
  const [n1, n2] = cluster.nodes;
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-hooks-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const binaries = findPgBinaries()!;
  // The hooks run as pgfloat (root here); pg_ctl must run as the server's user, as an operator's script would do it.
  const user = unprivilegedUser();
  const asServer = user === undefined ? '' : `runuser -u ${user.name} -- `;
  const pgCtl = `${asServer}${binaries.path('pg_ctl')}`;
  const record = (name: string): string => `env | grep '^PGFLOAT_' > ${dir}/${name}.env`;
  const commands: Commands = {
    stop: `${record('stop')}; ${pgCtl} stop -D "$PGFLOAT_DATA_DIR" -m fast -w`,
    start: `${record('start')}; ${pgCtl} start -D "$PGFLOAT_DATA_DIR" -w -l "$PGFLOAT_DATA_DIR.log" -o "-p $PGFLOAT_NODE_PORT" >/dev/null`,
    // n2 already streams from n1: a real hook would pg_rewind or pg_basebackup here.
    rejoin: `${record('rejoin')}; echo "rejoined $PGFLOAT_NODE_NAME"`,
  };

  t.equal(managerFor({ ...nodeWith(n2, {}), dataDir: null }, ctx(), 1), undefined, 'neither dataDir nor commands: not managed');
  const manager = managerFor(nodeWith(n2, commands), ctx(), 1)!;
  t.equal(manager.kind, 'commands', 'hooks win over dataDir');

  const progress: string[] = [];
  await manager.stop((m) => progress.push(m));
  t.equal(await n2.isRunning(), false, 'the stop hook stopped n2');
  t.same(
    envFile(join(dir, 'stop.env')),
    { PGFLOAT_NODE_NAME: 'n2', PGFLOAT_NODE_HOST: '127.0.0.1', PGFLOAT_NODE_PORT: String(n2.port), PGFLOAT_DATA_DIR: n2.dataDir },
    'the stop hook got the node name, host, port and data directory',
  );

  await manager.start((m) => progress.push(m));
  t.same(await queryOnce(n2.connectionString(), 'select pg_is_in_recovery() as r'), [{ r: true }], 'the start hook started n2, which accepts connections');
  t.ok(progress.includes('n2 accepts connections'), 'start resolves once n2 accepts connections');

  const rejoinProgress: string[] = [];
  const method = await manager.rejoin({ name: n1.name, host: n1.host, port: n1.port }, { rebuild: true, timeoutMs: 60_000 }, (m) => rejoinProgress.push(m));
  t.comment(rejoinProgress.join('\n'));
  t.equal(method, 'command', 'the rejoin hook did it');
  t.same(
    envFile(join(dir, 'rejoin.env')),
    {
      PGFLOAT_NODE_NAME: 'n2',
      PGFLOAT_NODE_HOST: '127.0.0.1',
      PGFLOAT_NODE_PORT: String(n2.port),
      PGFLOAT_DATA_DIR: n2.dataDir,
      PGFLOAT_PRIMARY_NAME: 'n1',
      PGFLOAT_PRIMARY_HOST: '127.0.0.1',
      PGFLOAT_PRIMARY_PORT: String(n1.port),
      PGFLOAT_REBUILD: '1',
      PGFLOAT_REPLICATION_USER: 'postgres',
    },
    'the rejoin hook got the node, the primary and the rebuild flag',
  );
  t.ok(rejoinProgress.some((m) => m === 'nodes[1].commands.rejoin finished: rejoined n2'), "the hook's output is reported");
  t.ok(rejoinProgress.some((m) => /^n2 streams from n1 on timeline 1/.test(m)), 'pgfloat checked that n2 streams afterwards');
  await manager.rejoin({ name: n1.name, host: n1.host, port: n1.port }, { rebuild: false }, () => undefined);
  t.equal(envFile(join(dir, 'rejoin.env')).PGFLOAT_REBUILD, '0', 'PGFLOAT_REBUILD is 0 without rebuild');

  // A failing hook: its exit status and the end of its output are in the error.
  const failing = managerFor(nodeWith(n2, { rejoin: 'echo "cannot reach db2 over ssh"; echo "permission denied" >&2; exit 3' }), ctx(), 1)!;
  await t.rejects(
    failing.rejoin({ name: n1.name, host: n1.host, port: n1.port }, { rebuild: false }, () => undefined),
    /rejoin of n2 failed: nodes\[1\]\.commands\.rejoin failed for n2 \(exit code 3\):\ncannot reach db2 over ssh\npermission denied/,
    'a failing hook: error with its exit code and output',
  );

  // A hook that outlives its time is killed, with what it started.
  const slow = managerFor(nodeWith(n2, { stop: 'echo "stopping slowly"; sleep 30; echo never' }), ctx({ stopStartTimeoutMs: 500 }), 1)!;
  await t.rejects(slow.stop(() => undefined), /nodes\[1\]\.commands\.stop failed for n2 \(timed out after 500 ms\):\nstopping slowly$/, 'a slow hook times out');

  // A missing hook names its key.
  const partial = managerFor(nodeWith(n2, { rejoin: 'true' }), ctx(), 1)!;
  await t.rejects(partial.stop(() => undefined), /nodes\[1\]\.commands\.stop is not set/, 'a missing stop hook names nodes[1].commands.stop');
  await t.rejects(partial.start(() => undefined), /nodes\[1\]\.commands\.start is not set/, 'a missing start hook names nodes[1].commands.start');
  const noRejoin = managerFor(nodeWith(n2, { stop: 'true' }), ctx(), 1)!;
  await t.rejects(
    noRejoin.rejoin({ name: n1.name, host: n1.host, port: n1.port }, { rebuild: false }, () => undefined),
    /nodes\[1\]\.commands\.rejoin is not set/,
    'a missing rejoin hook names nodes[1].commands.rejoin',
  );
});
