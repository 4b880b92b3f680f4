// Reliability with three pgfloat instances over etcd: an instance cut off from etcd or from the primary, etcd losing its leader, a multi-host libpq client.
import t from 'tap';
import { runPsql } from '../harness/clients';
import { FaultRelay } from '../harness/fault-relay';
import { startInstanceScenario } from '../harness/instance-scenario';
import { eventually } from '../harness/pgfloat';

t.test('the decider cut off from etcd (blackhole): it stops routing writes and says why, another decides, no failover', async (t) => {
  const s = await startInstanceScenario(t, 'three instances: the decider cut off from etcd');
  const cut = await s.group.decider();
  await cut.etcd('blackhole');
  await eventually(async () => (await cut.status())?.coordination?.connected === false, 'the cut-off instance to notice its lease is gone', 30_000);
  const refused = await runPsql(cut.readWriteUrl(), ['-c', 'select 1']);
  t.not(refused.code, 0, 'the cut-off instance refuses a writer');
  t.match(refused.stderr, /cut off from etcd/, 'with an ErrorResponse saying why');
  const next = await s.group.decider(30_000, cut);
  t.not(next.name, cut.name, 'another instance decides');
  await s.writers.acked(60);
  await cut.etcd('pass');
  await eventually(async () => (await cut.status())?.primary === 'n1', 'the healed instance to route writes again', 30_000);
  t.equal((await next.status())!.epoch, 1, 'no failover happened');
  await s.finish('n1');
});

t.test('etcd (three members) loses its leader: the instances keep routing, no failover', async (t) => {
  const s = await startInstanceScenario(t, 'three instances: etcd loses its leader', { etcdMembers: 3, leaseTtlSeconds: 3 });
  const killed = await s.etcd.killLeader();
  await s.etcd.waitForLeader();
  await s.writers.acked(60);
  await killed.start();
  await s.writers.acked(60);
  const leaseLosses = s.group.logs().flatMap((l) => l.lines).filter((l) => l.msg === 'lost the etcd lease');
  t.same(leaseLosses.map((l) => l.reason), [], 'no instance lost its lease: etcd carries leases over to the new leader');
  for (const i of s.group.instances) {
    const status = (await i.status())!;
    t.equal(status.primary, 'n1', `${i.name} routes to n1`);
    t.equal(status.epoch, 1, `${i.name}: no failover`);
  }
  await s.finish('n1');
});

t.test('one instance cut off from the primary while the others see it: no failover; its writers move to the others', async (t) => {
  let relay: FaultRelay | undefined;
  const s = await startInstanceScenario(t, 'three instances: one cut off from the primary', {
    nodes: async (cluster) => {
      relay = await FaultRelay.start(t, cluster.primary.port);
      const viaRelay = cluster.nodes.map((n, i) => (i === 0 ? { name: n.name, host: '127.0.0.1', port: relay!.port } : n));
      return (name: string) => (name === 'c' ? viaRelay : cluster.nodes);
    },
  });
  await relay!.set('refuse');
  const c = s.group.get('c');
  await eventually(async () => /other instances still reach it/.test((await c.status())?.failoverBlocked ?? ''), 'c to refuse writers because only it lost n1', 30_000);
  const refused = await runPsql(c.readWriteUrl(), ['-c', 'select 1']);
  t.match(refused.stderr, /57P03|no verified primary/, 'c answers a writer with an ErrorResponse at once');
  await s.writers.acked(100);
  for (const i of s.group.instances) t.equal((await i.status())!.epoch, 1, `${i.name}: no failover`);
  await relay!.set('pass');
  await eventually(async () => (await c.status())?.primary === 'n1', 'c to route to n1 again once healed', 30_000);
  await s.finish('n1');
});

t.test('a multi-host libpq client (psql, target_session_attrs=read-write) keeps writing through the loss of any one instance', async (t) => {
  const s = await startInstanceScenario(t, 'three instances: multi-host psql through the loss of each');
  await runPsql(s.group.urls()[0]!, ['-c', 'create table psql_probe (lost text)']);
  for (const lost of s.group.instances) {
    await lost.kill('SIGKILL');
    // libpq tries the hosts in order; a dead one (refused) or a refusing one (an ErrorResponse) sends it to the next.
    const psql = await runPsql(s.group.libpqConninfo(), ['-qAt', '-c', `insert into psql_probe values ('${lost.name}') returning inet_server_port()`], { timeoutMs: 60_000 });
    t.equal(psql.code, 0, `psql writes with ${lost.name} gone${psql.stderr.trim() ? `: ${psql.stderr.trim()}` : ''}`);
    t.equal(Number(psql.stdout.trim()), s.cluster.primary.port, 'on the primary');
    await lost.start();
  }
  const rows = await runPsql(s.cluster.primary.connectionString(), ['-At', '-c', "select string_agg(lost, ',' order by lost) from psql_probe"]);
  t.equal(rows.stdout.trim(), 'a,b,c', 'every write is on the primary');
  await s.finish('n1');
});
