// The test cluster behind TLS: servers with ssl=on whose pg_hba.conf takes TCP connections only over TLS.

import t from 'tap';
import { startCluster } from '../harness/cluster';
import { connectClient, rejectionOf, runPsql } from '../harness/clients';
import { makeTestCa } from '../harness/test-ca';

t.test('a hostssl-only cluster refuses plaintext and serves verify-full', async (t) => {
  const ca = await makeTestCa(t);
  const server = await ca.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const cluster = await startCluster(t, { tls: { ...server, ca: ca.ca, hostsslOnly: true } });
  for (const node of cluster.nodes) {
    const verified = await runPsql(node.connectionString(), ['-A', '-t', '-c', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()']);
    t.equal(verified.code, 0, `${node.name}: psql with verify-full works`, { stderr: verified.stderr });
    t.equal(verified.stdout.trim(), 't', `${node.name}: over TLS`);
    const plain = await rejectionOf(connectClient({ host: node.host, port: node.port, user: 'postgres', database: 'postgres', ssl: false }));
    t.match(plain.message, /no encryption/, `${node.name}: a plaintext client is rejected by pg_hba`);
  }
  const streaming = await connectClient(cluster.primary.connectionString());
  const { rows } = await streaming.query<{ ssl: boolean }>('select s.ssl from pg_stat_replication r join pg_stat_ssl s using (pid)');
  await streaming.end();
  t.same(rows, [{ ssl: true }], 'the standby streams over TLS');
});
