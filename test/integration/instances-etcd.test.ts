// Several pgfloat instances over one etcd: they agree on the primary, one decides, all follow its failover.
import t from 'tap';
import { startCluster } from '../harness/cluster';
import { postOperation, runCli, TEST_TOKEN } from '../harness/cli';
import { connectClient, queryOnce, rejectionOf } from '../harness/clients';
import { startEtcd } from '../../src/sandbox/etcd-cluster';
import { eventually, startPgfloatAt, stateDirFor, type RunningPgfloat } from '../harness/pgfloat';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import type { EtcdCluster } from '../../src/sandbox/etcd-cluster';
import type { Teardown } from '../harness/cluster';

async function startInstances(t: Teardown, cluster: LocalCluster, etcd: EtcdCluster, names: string[]): Promise<RunningPgfloat[]> {
  const instances: RunningPgfloat[] = [];
  for (const name of names) {
    instances.push(
      await startPgfloatAt(t, cluster.nodes, stateDirFor(t), {
        admin: { listen: '127.0.0.1:0', token: TEST_TOKEN },
        state: { store: 'etcd', etcd: { endpoints: etcd.endpoints, prefix: '/pgfloat/test', instance: name, leaseTtlSeconds: 2 } },
      }),
    );
  }
  return instances;
}

t.test('two instances agree on the primary, show each other, and one decides', async (t) => {
  const [cluster, etcd] = await Promise.all([startCluster(t), startEtcd(t)]);
  const [a, b] = await startInstances(t, cluster, etcd, ['a', 'b']);
  await eventually(() => a!.instance.status().primary !== null && b!.instance.status().primary !== null, 'both route to a primary');
  t.equal(a!.instance.status().primary, 'n1');
  t.equal(b!.instance.status().primary, 'n1');
  for (const p of [a!, b!]) {
    const rows = await queryOnce<{ port: number }>(p.readWriteUrl(), 'select inet_server_port() as port');
    t.equal(rows[0]!.port, cluster.nodes[0]!.port, 'writes reach n1');
  }
  await eventually(() => (a!.instance.status().instances ?? []).length === 2, 'a sees both instances');
  const status = a!.instance.status();
  t.same(
    status.instances!.map((i) => [i.name, i.decider, i.view.n1]),
    [
      ['a', true, 'up'],
      ['b', false, 'up'],
    ],
    'a decides (it started first); both see n1 up',
  );
  t.equal(status.coordination?.connected, true);
  const printed = await runCli(['status', '--admin', b!.adminUrl]);
  t.equal(printed.code, 0);
  t.match(printed.stdout, /instance\s.*decider\s.*sees n1/, '`pgfloat status` has a table of instances');
  t.match(printed.stdout, /│ a\s+│ yes\s+│ up/, 'a, the decider, sees n1 up');
  t.match(printed.stdout, /│ b \(this\)\s+│ no\s+│ up/, 'b is the instance asked');

  const answer = await postOperation(b!.adminUrl, '/fence/n2');
  t.equal(answer.status, 409, 'an operation sent to a follower is refused');
  t.match(answer.json.message, /send it to the decider, a/);
  t.equal(b!.instance.status().nodes.find((n) => n.name === 'n2')?.fenced, false, 'and not carried out');
});

t.test('the decider fails over; the follower routes to the new primary and keeps no session to the old one', async (t) => {
  const [cluster, etcd] = await Promise.all([startCluster(t), startEtcd(t)]);
  const [a, b] = await startInstances(t, cluster, etcd, ['a', 'b']);
  await eventually(() => b!.instance.status().primary === 'n1' && (a!.instance.status().instances ?? []).length === 2, 'both instances up');
  const held = await connectClient(b!.readWriteUrl());
  await held.query("SET work_mem = '2MB'");
  const heldError = new Promise<Error>((resolve) => held.once('error', resolve));
  // A session that has sent nothing since its login: the follower knows its state without asking n1.
  const untouched = await connectClient(b!.readWriteUrl());
  t.teardown(() => untouched.end());

  await cluster.nodes[0]!.stop('immediate');
  await eventually(() => a!.instance.status().primary === 'n2' && b!.instance.status().primary === 'n2', 'both route to n2', 60_000);
  t.match((await heldError).message, /terminat|fenced|ended/i, 'the follower dropped its session to n1');
  const moved = await untouched.query<{ port: number }>('select inet_server_port() as port');
  t.same(moved.rows, [{ port: cluster.nodes[1]!.port }], 'and moved the session whose state it knew to n2');
  t.same(untouched.errors, [], 'without an error');
  const rows = await queryOnce<{ port: number; ro: string }>(b!.readWriteUrl(), "select inet_server_port() as port, current_setting('transaction_read_only') as ro");
  t.equal(rows[0]!.port, cluster.nodes[1]!.port, 'the follower routes writes to n2');
  t.equal(rows[0]!.ro, 'off');
  t.equal(b!.instance.status().epoch, 2);
  t.same(b!.instance.status().nodes.find((n) => n.name === 'n1')?.fenced, true, 'the follower sees n1 fenced');
  await held.end().catch(() => undefined);
});

t.test('a switchover with two instances: the follower holds writers and moves its sessions at transaction boundaries too', async (t) => {
  const [cluster, etcd] = await Promise.all([startCluster(t), startEtcd(t)]);
  const [a, b] = await startInstances(t, cluster, etcd, ['a', 'b']);
  await eventually(() => b!.instance.status().primary === 'n1' && (a!.instance.status().instances ?? []).length === 2, 'both instances up');
  await queryOnce(b!.readWriteUrl(), 'create table moved (id int)');
  const idle = await connectClient(b!.readWriteUrl());
  t.teardown(() => idle.end());
  await idle.query("SET work_mem = '3MB'");
  const busy = await connectClient(b!.readWriteUrl());
  t.teardown(() => busy.end());
  await busy.query('BEGIN');
  await busy.query('INSERT INTO moved VALUES (1)');

  const answer = await postOperation(a!.adminUrl, '/switchover', {});
  t.equal(answer.status, 202, JSON.stringify(answer.json));
  await eventually(() => b!.instance.status().writesHeld, 'the follower to hold new writers');
  await busy.query('INSERT INTO moved VALUES (2)');
  await busy.query('COMMIT');
  await eventually(() => a!.instance.status().primary === 'n2' && b!.instance.status().primary === 'n2', 'both route to n2', 60_000);

  for (const [name, c] of [['idle', idle], ['busy', busy]] as const) {
    const { rows } = await c.query<{ port: number; w: string }>("select inet_server_port() as port, current_setting('work_mem') as w");
    t.equal(rows[0]!.port, cluster.nodes[1]!.port, `the follower's ${name} session lives on n2`);
    if (name === 'idle') t.equal(rows[0]!.w, '3MB', 'with its settings');
    t.same(c.errors, [], `its client saw no error`);
  }
  t.same(await queryOnce(b!.readWriteUrl(), 'select count(*)::int as n from moved'), [{ n: 2 }], 'the transaction that ended during the drain reached n2');
  await eventually(() => b!.instance.status().sessionMoves.moved === 2, 'both moves counted on the follower');
});

t.test('an instance whose etcd is gone refuses writes with an ErrorResponse that says why', async (t) => {
  const [cluster, etcd] = await Promise.all([startCluster(t), startEtcd(t)]);
  const [a] = await startInstances(t, cluster, etcd, ['a']);
  await eventually(() => a!.instance.status().primary === 'n1', 'a routes to n1');
  const metric = async (name: string): Promise<number> => {
    const text = await fetch(`${a!.adminUrl}/metrics`).then((r) => r.text());
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  };
  t.equal(await metric('pgfloat_etcd_lease'), 1);
  t.equal(await metric('pgfloat_decider'), 1, 'alone, a decides');
  await etcd.members[0]!.stop();
  await eventually(() => a!.instance.status().coordination?.connected === false, 'a notices its lease is gone', 30_000);
  t.equal(await metric('pgfloat_etcd_lease'), 0, 'the lease loss shows in the metrics');
  t.equal(await metric('pgfloat_decider'), 0);
  const err = await rejectionOf(queryOnce(a!.readWriteUrl(), 'select 1'));
  t.equal(err.code, '57P03');
  t.match(err.message, /cut off from etcd/);
  await etcd.members[0]!.start();
  await eventually(() => a!.instance.status().coordination?.connected === true && a!.instance.status().primary === 'n1', 'a routes again', 30_000);
  const rows = await queryOnce<{ one: number }>(a!.readWriteUrl(), 'select 1 as one');
  t.equal(rows[0]!.one, 1);
});
