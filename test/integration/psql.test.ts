// psql through pgfloat: queries, COPY in and out (\copy and COPY ... STDIN/STDOUT), and the read-only port.

import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCluster } from '../harness/cluster';
import { startPgfloat } from '../harness/pgfloat';
import { queryOnce, runPsql } from '../harness/clients';

t.test('psql through pgfloat', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const work = mkdtempSync(join(tmpdir(), 'pgfloat-psql-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  t.test('a query through the read-write port reaches the primary', async (t) => {
    const r = await runPsql(proxy.readWriteUrl(), ['-A', '-t', '-c', "select current_setting('port'), pg_is_in_recovery(), 6 * 7"]);
    t.equal(r.code, 0, 'psql exits 0', { stderr: r.stderr });
    t.equal(r.stdout.trim(), `${cluster.primary.port}|f|42`);
  });

  t.test('a failing statement makes psql exit non-zero with the server error', async (t) => {
    const r = await runPsql(proxy.readWriteUrl(), ['-c', 'select * from no_such_table']);
    t.equal(r.code, 1);
    t.match(r.stderr, /relation "no_such_table" does not exist/);
  });

  t.test('\\copy in and out of a table', async (t) => {
    const rows = Array.from({ length: 5000 }, (_, i) => `${i + 1},"name ${i + 1}, with comma",${(i * 1.5).toFixed(1)}`);
    const input = join(work, 'in.csv');
    const output = join(work, 'out.csv');
    writeFileSync(input, rows.join('\n') + '\n');
    const load = await runPsql(proxy.readWriteUrl(), [
      '-c', 'create table copied (id int primary key, name text, amount numeric)',
      '-c', `\\copy copied from '${input}' with (format csv)`,
    ]);
    t.equal(load.code, 0, 'psql exits 0', { stderr: load.stderr });
    t.match(load.stdout, /COPY 5000/);
    const direct = await queryOnce<{ n: string; total: string }>(cluster.primary.connectionString(), 'select count(*) as n, sum(amount)::text as total from copied');
    t.same(direct, [{ n: '5000', total: String(rows.reduce((s, _, i) => s + i * 1.5, 0).toFixed(1)) }], 'the rows are on the primary');

    const dump = await runPsql(proxy.readWriteUrl(), ['-c', `\\copy (select * from copied order by id) to '${output}' with (format csv)`]);
    t.equal(dump.code, 0, 'psql exits 0', { stderr: dump.stderr });
    t.equal(readFileSync(output, 'utf8'), readFileSync(input, 'utf8'), 'what came out is what went in');
  });

  t.test('COPY FROM STDIN and COPY TO STDOUT through psql', async (t) => {
    const lines = Array.from({ length: 20000 }, (_, i) => `${i}\t${'v'.repeat(i % 97)}`);
    const load = await runPsql(proxy.readWriteUrl(), ['-c', 'create table streamed (id int, payload text)', '-c', 'copy streamed from stdin'], {
      input: lines.join('\n') + '\n',
    });
    t.equal(load.code, 0, 'psql exits 0', { stderr: load.stderr });
    t.match(load.stdout, /COPY 20000/);
    const out = await runPsql(proxy.readWriteUrl(), ['-c', 'copy (select * from streamed order by id) to stdout']);
    t.equal(out.code, 0, 'psql exits 0', { stderr: out.stderr });
    t.equal(out.stdout, lines.join('\n') + '\n', 'COPY TO STDOUT returns the same bytes');
  });

  t.test('psql through the read-only port is on a standby', async (t) => {
    const r = await runPsql(proxy.readOnlyUrl(), ['-A', '-t', '-c', "select pg_is_in_recovery(), current_setting('port')"]);
    t.equal(r.code, 0, 'psql exits 0', { stderr: r.stderr });
    t.equal(r.stdout.trim(), `t|${cluster.standby.port}`);
    const write = await runPsql(proxy.readOnlyUrl(), ['-c', 'create table on_standby (id int)']);
    t.equal(write.code, 1);
    t.match(write.stderr, /read-only transaction/);
  });
});
