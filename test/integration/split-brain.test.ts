// Two nodes claiming primary (the standby promoted behind pgfloat's back): writes are refused, and it is said loudly.
import t from 'tap';
import { Writable } from 'node:stream';
import { Client } from 'pg';
import { createLogger } from '../../src/log';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { rejectionOf } from '../harness/clients';

t.test('a second primary makes pgfloat refuse writes and report split brain', async (t) => {
  const cluster = await startCluster(t);
  const lines: Array<{ msg: string; [key: string]: unknown }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { msg: string });
      done();
    },
  });
  const proxy = await startPgfloat(t, cluster, {}, { log: createLogger('info', sink) });

  const before = new Client({ connectionString: proxy.readWriteUrl() });
  await before.connect();
  await before.query('select 1');
  await before.end();

  const standby = new Client({ connectionString: cluster.standby.connectionString() });
  await standby.connect();
  await standby.query('select pg_promote()');
  await standby.end();
  await eventually(() => proxy.instance.status().splitBrain, 'status to show split brain');

  const err = await rejectionOf(new Client({ connectionString: proxy.readWriteUrl() }).connect());
  t.equal(err.code, '57P03', 'refused with SQLSTATE 57P03');
  t.match(err.message, /no verified primary available: more than one node claims to be primary/);
  t.match((err as Error & { detail?: string }).detail ?? '', /n1, n2/, 'the detail names both nodes');

  const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
  t.match(metrics, /^pgfloat_split_brain 1$/m, 'the split-brain gauge is raised');
  t.match(metrics, /^pgfloat_client_refusals_total\{listener="readWrite",reason="split-brain"\} [1-9]/m, 'the refusal is counted');

  t.ok(lines.some((l) => l.msg === 'node role changed' && l.node === 'n2' && l.to === 'primary'), 'the role change is logged');
  t.ok(lines.some((l) => l.msg.startsWith('split brain')), 'the split brain is logged');
  t.ok(lines.some((l) => l.msg.startsWith('refused client') && l.reason === 'split-brain'), 'the refusal is logged');
});
