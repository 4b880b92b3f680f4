// Two nodes claiming primary (the standby promoted behind pgfloat's back): writes are refused, and it is said loudly.
import t from 'tap';
import { Writable } from 'node:stream';
import { Client } from 'pg';
import { createLogger } from '../../src/log';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { rejectionOf } from '../harness/clients';

function collectLogs(): { lines: Array<{ msg: string; [key: string]: unknown }>; sink: Writable } {
  const lines: Array<{ msg: string; [key: string]: unknown }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { msg: string });
      done();
    },
  });
  return { lines, sink };
}

async function promoteDirectly(url: string): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  await client.query('select pg_promote()');
  await client.end();
}

t.test('two primaries at first start, no state to choose: no writes until an operator adopts one', async (t) => {
  const cluster = await startCluster(t);
  await promoteDirectly(cluster.standby.connectionString());
  const { lines, sink } = collectLogs();
  const proxy = await startPgfloat(t, cluster, {}, { log: createLogger('info', sink) });
  await eventually(() => proxy.instance.status().splitBrain, 'status to show split brain');

  const err = await rejectionOf(new Client({ connectionString: proxy.readWriteUrl() }).connect());
  t.equal(err.code, '57P03', 'refused with SQLSTATE 57P03');
  t.match(err.message, /no verified primary available: more than one node claims to be primary/);
  t.match((err as Error & { detail?: string }).detail ?? '', /n1, n2/, 'the detail names both nodes');

  const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
  t.match(metrics, /^pgfloat_split_brain 1$/m, 'the split-brain gauge is raised');
  t.match(metrics, /^pgfloat_client_refusals_total\{listener="readWrite",reason="split-brain"\} [1-9]/m, 'the refusal is counted');
  t.ok(lines.some((l) => l.msg.startsWith('split brain')), 'the split brain is logged');
  t.ok(lines.some((l) => l.msg.startsWith('refused client') && l.reason === 'split-brain'), 'the refusal is logged');

  proxy.instance.operator({ command: 'adopt', node: 'n2' });
  await eventually(() => proxy.instance.status().primary === 'n2', 'n2 to be routed after adopt');
  const client = new Client({ connectionString: proxy.readWriteUrl() });
  await client.connect();
  const { rows } = await client.query<{ port: number }>('select inet_server_port() as port');
  t.equal(rows[0]!.port, cluster.standby.port, 'writes reach the adopted node');
  await client.end();
  t.ok(proxy.instance.status().nodes.find((n) => n.name === 'n1')!.fenced, 'the other claimant is fenced');
});

t.test('a second primary appearing beside the recorded one is fenced; writes stay on the recorded primary', async (t) => {
  const cluster = await startCluster(t);
  const { lines, sink } = collectLogs();
  const proxy = await startPgfloat(t, cluster, {}, { log: createLogger('info', sink) });
  await promoteDirectly(cluster.standby.connectionString());
  await eventually(() => proxy.instance.status().nodes.find((n) => n.name === 'n2')!.fenced, 'n2 to be fenced');

  const client = new Client({ connectionString: proxy.readWriteUrl() });
  await client.connect();
  const { rows } = await client.query<{ port: number }>('select inet_server_port() as port');
  t.equal(rows[0]!.port, cluster.primary.port, 'writes still reach n1');
  await client.end();
  const reader = new Client({ connectionString: proxy.readOnlyUrl() });
  await reader.connect();
  const ro = await reader.query<{ port: number }>('select inet_server_port() as port');
  t.equal(ro.rows[0]!.port, cluster.primary.port, 'read-only falls back to n1: the fenced node gets nothing');
  await reader.end();
  t.ok(lines.some((l) => l.msg === 'node role changed' && l.node === 'n2' && l.to === 'primary'), 'the role change is logged');
  t.ok(lines.some((l) => l.msg === 'a second node runs as primary: fencing it'), 'the fencing is logged');
});

t.test('probe endpoints say 503 while no primary is routed', async (t) => {
  const cluster = await startCluster(t);
  await promoteDirectly(cluster.standby.connectionString());
  const proxy = await startPgfloat(t, cluster);
  await eventually(() => proxy.instance.status().splitBrain, 'split brain');
  t.equal((await fetch(`${proxy.adminUrl}/primary`)).status, 503, '/primary: no primary to send writes to');
  t.equal((await fetch(`${proxy.adminUrl}/replica`)).status, 503, '/replica: no standby either');
});
