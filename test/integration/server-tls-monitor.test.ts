// serverTls for pgfloat's own connections: the monitor's heartbeats (what /status, the CLI and metrics report) and admin SQL, against TLS and plain servers.

import t from 'tap';
import type { NodeStatus } from '../../src/admin/status';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { queryOnce, rejectionOf } from '../harness/clients';
import { withAdminSession } from '../../src/postgres/admin-session';
import type { ServerTlsPolicy } from '../../src/postgres/server-tls';
import { runCli } from '../harness/cli';
import { startCluster, type Teardown } from '../harness/cluster';
import { metricValue, nodeStatus } from '../harness/faults';
import { captureLog } from '../harness/log-capture';
import { eventually, startPgfloat, type ConfigOverrides, type RunningPgfloat } from '../harness/pgfloat';
import { makeTestCa, type IssuedCertificate, type TestCa } from '../harness/test-ca';

/** /status as an operator reads it, over HTTP. */
async function status(proxy: RunningPgfloat): Promise<{ primary: string | null; standbys: string[]; nodes: NodeStatus[] }> {
  return (await (await fetch(`${proxy.adminUrl}/status`)).json()) as { primary: string | null; standbys: string[]; nodes: NodeStatus[] };
}

/** Waits until every heartbeat of `node` has been answered or refused `count` more times. */
async function heartbeats(proxy: RunningPgfloat, node: string, count: number): Promise<void> {
  let seen = 0;
  const listener = (health: { node: string }): void => {
    if (health.node === node) seen++;
  };
  proxy.instance.monitor.on('heartbeat', listener);
  try {
    await eventually(() => seen >= count, `${count} heartbeats of ${node}`);
  } finally {
    proxy.instance.monitor.off('heartbeat', listener);
  }
}

/** Whether `node`'s monitor connection (application_name pgfloat-monitor) runs over TLS, asked of the server itself. */
async function monitorUsesTls(node: { connectionString(): string }): Promise<boolean[]> {
  const rows = await queryOnce<{ ssl: boolean }>(
    node.connectionString(),
    "select s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid) where a.application_name = 'pgfloat-monitor'",
  );
  return rows.map((r) => r.ssl);
}

function nodesWith(cluster: LocalCluster, own: Record<string, Record<string, unknown>>): ConfigOverrides {
  return { nodes: cluster.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, ...(own[n.name] && { serverTls: own[n.name] }) })) };
}

interface TlsCluster {
  ca: TestCa;
  server: IssuedCertificate;
  cluster: LocalCluster;
}

async function hostsslCluster(t: Teardown, names: readonly string[] = ['localhost', '127.0.0.1']): Promise<TlsCluster> {
  const ca = await makeTestCa(t);
  const server = await ca.issue('server', names[0] ?? 'localhost', names);
  const cluster = await startCluster(t, { tls: { ...server, ca: ca.ca, hostsslOnly: true } });
  return { ca, server, cluster };
}

t.test('hostssl-only servers', async (t) => {
  const { ca, cluster } = await hostsslCluster(t);

  t.test('verify-full: both nodes up, encrypted and verified', async (t) => {
    const proxy = await startPgfloat(t, cluster, { serverTls: { mode: 'verify-full', ca: ca.ca } });
    await eventually(async () => (await status(proxy)).standbys.includes('n2'), 'n2 to be routed as a standby');
    const s = await status(proxy);
    t.equal(s.primary, 'n1', 'n1 is the verified primary');
    for (const name of ['n1', 'n2']) {
      const node = s.nodes.find((n) => n.name === name)!;
      t.equal(node.health, 'up', `${name} is up`);
      t.same(node.tls, { mode: 'verify-full', state: 'encrypted', error: null }, `${name}: /status shows the heartbeat encrypted`);
      t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_tls', { node: name, state: 'encrypted' }), 1, `${name}: pgfloat_node_tls{state="encrypted"} is 1`);
    }
    t.same(await monitorUsesTls(cluster.primary), [true], "n1 sees pgfloat's monitor connection over TLS");
    t.same(await monitorUsesTls(cluster.standby), [true], "n2 sees pgfloat's monitor connection over TLS");
    const cli = await runCli(['status', '--admin', proxy.adminUrl]);
    t.equal(cli.code, 0, 'pgfloat status exits 0');
    t.match(cli.stdout, /verify-full encrypted/, "the CLI shows each node's TLS");
  });

  t.test("a server certificate from another CA: the node is refused, reported, and never routed to", async (t) => {
    const other = await makeTestCa(t, 'another CA');
    const log = captureLog();
    const proxy = await startPgfloat(t, cluster, { serverTls: { mode: 'verify-full', ca: ca.ca }, ...nodesWith(cluster, { n2: { ca: other.ca } }) }, { log: log.logger });
    await eventually(() => nodeStatus(proxy.instance.status(), 'n2').health === 'down', 'n2 to be down');
    await heartbeats(proxy, 'n2', 5);
    const s = await status(proxy);
    const n2 = s.nodes.find((n) => n.name === 'n2')!;
    t.equal(n2.tls.state, 'failed', 'n2: tls failed');
    t.match(n2.tls.error, /certificate chain check of serverTls\.mode verify-full/, 'n2: which check failed');
    t.match(n2.lastError, /certificate chain/, "n2's last error says so too");
    t.equal(s.primary, 'n1', 'n1 is still the primary');
    t.notOk(s.standbys.includes('n2'), 'n2 is not routed to');
    t.same(nodeStatus(proxy.instance.status(), 'n1').tls, { mode: 'verify-full', state: 'encrypted', error: null }, 'n1 is verified');
    t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_tls', { node: 'n2', state: 'failed' }), 1, 'pgfloat_node_tls{node="n2",state="failed"} is 1');
    const refused = log.lines().filter((l) => l.msg.startsWith('server TLS refused'));
    t.equal(refused.length, 1, 'the refusal is logged once, not at every heartbeat');
    t.match(refused[0], { node: 'n2', mode: 'verify-full', reason: /certificate chain/ }, 'the log line names the node, the mode and the check');
    const cli = await runCli(['status', '--admin', proxy.adminUrl]);
    t.match(cli.stdout, /verify-full FAILED/, 'the CLI shows the failure');
  });

  t.test("disable: the servers refuse pgfloat, and /status shows their 'no encryption'", async (t) => {
    const proxy = await startPgfloat(t, cluster, { serverTls: { mode: 'disable' } });
    await eventually(() => proxy.instance.status().nodes.every((n) => n.health === 'down'), 'both nodes down');
    for (const node of proxy.instance.status().nodes) {
      t.match(node.lastError, /no encryption/, `${node.name}: the server's pg_hba answer is the last error`);
      t.equal(node.tls.state, 'failed', `${node.name}: tls failed`);
      t.match(node.tls.error, /accepts only encrypted connections, and serverTls\.mode disable/);
    }
    t.equal(proxy.instance.status().primary, null, 'no primary is routed');
  });

  for (const mode of ['allow', 'prefer', 'require'] as const) {
    t.test(`${mode}: encrypted without verification`, async (t) => {
      const proxy = await startPgfloat(t, cluster, { serverTls: { mode } });
      await eventually(() => proxy.instance.status().standbys.includes('n2'), 'n2 to be routed as a standby');
      for (const node of proxy.instance.status().nodes) {
        t.same(node.tls, { mode, state: 'encrypted', error: null }, `${node.name}: encrypted`);
      }
      t.same(await monitorUsesTls(cluster.primary), [true], 'the server agrees');
    });
  }
});

t.test("admin SQL (withAdminSession: promotion, fencing, the auth query) follows the node's serverTls", async (t) => {
  const { ca, cluster } = await hostsslCluster(t);
  const other = await makeTestCa(t, 'another CA');
  const n1 = cluster.primary;
  const credentials = { user: 'postgres', password: '', database: 'postgres' };
  const limits = { connectTimeoutMs: 5000, queryTimeoutMs: 5000 };
  const ownSsl = (tls: ServerTlsPolicy): Promise<boolean | undefined> =>
    withAdminSession({ name: n1.name, host: n1.host, port: n1.port, tls }, credentials, limits, async (client) => {
      const { rows } = await client.query<{ ssl: boolean }>('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
      return rows[0]?.ssl;
    });
  t.equal(await ownSsl({ mode: 'verify-full', ca: ca.ca, cert: null, key: null }), true, 'verify-full: the admin session is encrypted');
  const refused = await rejectionOf(ownSsl({ mode: 'verify-ca', ca: other.ca, cert: null, key: null }));
  t.match(refused.message, new RegExp(`cannot connect to n1 \\(127\\.0\\.0\\.1:${n1.port}\\): server certificate failed the certificate chain check of serverTls\\.mode verify-ca`), 'another CA: refused, naming the node, its address and the check');
  const plain = await rejectionOf(ownSsl({ mode: 'disable', ca: null, cert: null, key: null }));
  t.match(plain.message, /no encryption/, "disable: the server's refusal");
});

t.test('a certificate for another name: verify-full refuses it, verify-ca takes it', async (t) => {
  const { ca, cluster } = await hostsslCluster(t, ['wrong.example']);

  t.test('verify-full', async (t) => {
    const proxy = await startPgfloat(t, cluster, { serverTls: { mode: 'verify-full', ca: ca.ca } });
    await eventually(() => proxy.instance.status().nodes.every((n) => n.health === 'down'), 'both nodes down');
    for (const node of proxy.instance.status().nodes) {
      t.equal(node.tls.state, 'failed', `${node.name}: tls failed`);
      t.match(node.tls.error, /host name check of serverTls\.mode verify-full/, `${node.name}: the host name check failed`);
    }
    t.equal(proxy.instance.status().primary, null, 'nothing is routed');
  });

  t.test('verify-ca', async (t) => {
    const proxy = await startPgfloat(t, cluster, { serverTls: { mode: 'verify-ca', ca: ca.ca } });
    await eventually(() => proxy.instance.status().standbys.includes('n2'), 'n2 to be routed as a standby');
    t.equal(proxy.instance.status().primary, 'n1');
    for (const node of proxy.instance.status().nodes) t.same(node.tls, { mode: 'verify-ca', state: 'encrypted', error: null }, `${node.name}: encrypted`);
  });
});

t.test('plain servers (ssl = off)', async (t) => {
  const cluster = await startCluster(t);

  for (const mode of ['prefer', 'allow', 'disable'] as const) {
    t.test(`${mode}: plaintext`, async (t) => {
      const proxy = await startPgfloat(t, cluster, { serverTls: { mode } });
      await eventually(() => proxy.instance.status().standbys.includes('n2'), 'n2 to be routed as a standby');
      for (const node of proxy.instance.status().nodes) t.same(node.tls, { mode, state: 'plaintext', error: null }, `${node.name}: plaintext`);
      t.same(await monitorUsesTls(cluster.primary), [false], 'the server agrees');
    });
  }

  t.test('require: refused, saying the server does not do TLS', async (t) => {
    const proxy = await startPgfloat(t, cluster, { serverTls: { mode: 'require' } });
    await eventually(() => proxy.instance.status().nodes.every((n) => n.health === 'down'), 'both nodes down');
    for (const node of proxy.instance.status().nodes) {
      t.equal(node.tls.state, 'failed');
      t.match(node.tls.error, /does not accept TLS .* serverTls\.mode require requires it/, `${node.name}: why`);
    }
  });
});
