// pgbench through the read-write port: initialisation (COPY, DDL, VACUUM) and a concurrent TPC-B-like run.

import t from 'tap';
import { startCluster } from '../harness/cluster';
import { startPgfloat } from '../harness/pgfloat';
import { queryOnce, runTool } from '../harness/clients';

t.test('pgbench through pgfloat', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const connection = ['-h', '127.0.0.1', '-p', String(proxy.readWritePort), '-U', 'postgres'];

  const init = await runTool('pgbench', ['-i', '-s', '1', ...connection, 'postgres']);
  t.equal(init.code, 0, 'pgbench -i exits 0', { stderr: init.stderr });
  t.match(init.stderr, /done in/, 'initialisation finished');
  const accounts = await queryOnce<{ n: string }>(cluster.primary.connectionString(), 'select count(*) as n from pgbench_accounts');
  t.same(accounts, [{ n: '100000' }], 'pgbench_accounts loaded on the primary');

  const run = await runTool('pgbench', ['-c', '4', '-j', '2', '-t', '200', '-n', ...connection, 'postgres']);
  t.equal(run.code, 0, 'pgbench exits 0', { stderr: run.stderr });
  t.match(run.stdout, /number of transactions actually processed: 800\/800\b/, '800 transactions processed', { stdout: run.stdout });
  t.match(run.stdout, /number of failed transactions: 0 \(/, 'no failed transactions');
  const history = await queryOnce<{ n: string }>(cluster.primary.connectionString(), 'select count(*) as n from pgbench_history');
  t.same(history, [{ n: '800' }], 'every transaction left its history row on the primary');
});
