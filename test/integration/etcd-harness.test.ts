import t from 'tap';
import { startEtcd } from '../../src/sandbox/etcd-cluster';

t.test('a one-member cluster takes a put and a get', async (t) => {
  const etcd = await startEtcd(t);
  t.equal(etcd.endpoints.length, 1);
  t.match(etcd.endpoints[0], /^http:\/\/127\.0\.0\.1:\d+$/);
  const client = etcd.client();
  await client.put('harness/one').value('hello');
  t.equal(await client.get('harness/one').string(), 'hello');
  t.equal((await etcd.leader()).name, etcd.members[0]!.name, 'the only member leads');
});

t.test('a three-member cluster survives losing its leader, and the old leader rejoins', async (t) => {
  const etcd = await startEtcd(t, { members: 3, name: 'ha' });
  t.equal(new Set(etcd.members.map((m) => m.clientUrl)).size, 3, 'each member has its own port');
  const client = etcd.client();
  await client.put('harness/before').value('1');

  const killed = await etcd.killLeader();
  t.notOk(killed.running, 'the killed leader is down');
  const killedAt = Date.now();
  const next = await etcd.waitForLeader(5000);
  t.not(next.name, killed.name, 'a different member leads');
  t.comment(`new leader after ${Date.now() - killedAt} ms`);
  await client.put('harness/after').value('2');
  t.equal(await client.get('harness/before').string(), '1', 'data written before the kill survives');

  await killed.start();
  t.ok(killed.running, 'the old leader runs again');
  t.ok(killed.pid, 'and has a pid');
  const solo = etcd.client({ hosts: killed.clientUrl });
  // A linearizable read served through the rejoined member proves it follows the current leader.
  t.equal(await solo.get('harness/after').string(), '2', 'the rejoined member sees the write it missed');
  const leader = await etcd.leader();
  t.ok(leader.running, 'a running member leads');
});
