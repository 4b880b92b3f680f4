// A rogue primary (the old primary restarted after a failover) whose fencing action fails once: pgfloat must keep trying while it stays rogue.
// The failure is made real without touching pgfloat: a directory named postgresql.auto.conf.tmp makes ALTER SYSTEM fail on n1.
import t from 'tap';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log';
import { connectClient } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { crashServer, metricValue, nodeStatus, serverPortOf, tryQuery } from '../harness/faults';
import { eventually, startPgfloat } from '../harness/pgfloat';

t.test('the fencing action of a rogue primary fails once, then could succeed', async (t) => {
  const cluster = await startCluster(t);
  const lines: Array<{ msg: string; node?: string; err?: string }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { msg: string });
      done();
    },
  });
  const proxy = await startPgfloat(t, cluster, { failover: { retryIntervalMs: 1000 } }, { log: createLogger('info', sink) });

  const setup = await connectClient(proxy.readWriteUrl());
  await setup.query('create table writes (id int primary key)');
  await setup.end();
  await eventually(async () => (await tryQuery(cluster.standby.connectionString(), 'select 1 from writes')) !== undefined, 'the table to reach n2');

  await crashServer(cluster.primary);
  await eventually(() => proxy.instance.status().primary === 'n2', 'failover to n2', 60_000);

  const blocker = join(cluster.primary.dataDir, 'postgresql.auto.conf.tmp');
  mkdirSync(blocker);
  t.teardown(() => rmSync(blocker, { recursive: true, force: true }));
  const failuresBefore = lines.filter((l) => l.msg.startsWith('fencing action failed')).length;
  const failedActions = async (): Promise<number> => (await metricValue(proxy.adminUrl, 'pgfloat_fencing_actions_total', { node: 'n1', result: 'failed' })) ?? 0;
  const countedBefore = await failedActions();
  await cluster.primary.start();
  await eventually(() => nodeStatus(proxy.instance.status(), 'n1').roguePrimary, 'n1 to be reported as a rogue primary', 60_000);
  await eventually(async () => (await failedActions()) > countedBefore, 'the fencing action on the rogue n1 to fail', 30_000).catch(() => undefined);
  const failed = lines.filter((l) => l.msg.startsWith('fencing action failed')).slice(failuresBefore);
  t.ok(
    failed.some((l) => l.node === 'n1' && /postgresql\.auto\.conf\.tmp/.test(l.err ?? '')),
    `the fencing action on the rogue n1 failed, and pgfloat said so (${failed.map((l) => l.err).join('; ')})`,
  );

  rmSync(blocker, { recursive: true, force: true });
  // What pgfloat itself guarantees, whether or not the fencing action took.
  const status = proxy.instance.status();
  t.ok(nodeStatus(status, 'n1').fenced, 'n1 is fenced at the proxy');
  t.ok(nodeStatus(status, 'n1').roguePrimary, 'n1 is reported as a rogue primary');
  t.equal(await metricValue(proxy.adminUrl, 'pgfloat_node_rogue_primary', { node: 'n1' }), 1, 'the rogue-primary alert is raised');
  const client = await connectClient(proxy.readWriteUrl());
  t.equal(await serverPortOf(client), cluster.standby.port, 'writes go to n2');
  await client.end();

  // The fencing action can succeed now. Several retry intervals (failover.retryIntervalMs 1 s) while n1 stays rogue.
  let readOnly: string | undefined;
  await eventually(async () => {
    readOnly = (await tryQuery<{ v: string }>(cluster.primary.connectionString(), `select current_setting('default_transaction_read_only') as v`))?.[0]?.v;
    return readOnly === 'on';
  }, 'the fencing action to be applied again', 8_000).catch(() => undefined);
  t.equal(readOnly, 'on', 'the fencing action is retried while n1 stays a rogue primary, and takes');
  t.equal(nodeStatus(proxy.instance.status(), 'n1').roguePrimary, true, 'n1 is still a rogue primary (it was never demoted)');
});
