// The primary killed under write load: the standby is promoted, writes resume through the same address.
import t from 'tap';
import { Client } from 'pg';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';

t.test('SIGKILL of the primary under write load', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const setup = new Client({ connectionString: proxy.readWriteUrl() });
  await setup.connect();
  await setup.query('create table writes (id serial primary key, at timestamptz default now())');
  await setup.end();

  // A writer that reconnects as a pool would, and remembers every acknowledged row.
  const acknowledged: number[] = [];
  const errors: string[] = [];
  let stop = false;
  const writer = (async () => {
    let client: Client | undefined;
    while (!stop) {
      try {
        if (client === undefined) {
          client = new Client({ connectionString: proxy.readWriteUrl() });
          client.on('error', () => undefined);
          await client.connect();
        }
        const { rows } = await client.query<{ id: number }>('insert into writes default values returning id');
        acknowledged.push(rows[0]!.id);
      } catch (err) {
        errors.push((err as Error).message);
        client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await client?.end().catch(() => undefined);
  })();

  await eventually(() => acknowledged.length >= 50, 'writes before the fault');
  const beforeKill = acknowledged.length;
  cluster.primary.kill('SIGKILL');
  const killedAt = acknowledged.length;
  await eventually(() => proxy.instance.status().primary === 'n2', 'n2 to be promoted and routed', 60_000);
  const failedOverAt = acknowledged.length;
  await eventually(() => acknowledged.length >= beforeKill + 50, 'writes to resume on n2', 60_000);
  stop = true;
  await writer;

  const status = proxy.instance.status();
  t.equal(status.epoch, 2, 'the epoch moved on');
  t.ok(status.nodes.find((n) => n.name === 'n1')!.fenced, 'the old primary is fenced');
  t.ok(status.degenerate, 'the cluster is degenerate: one server');
  t.equal(status.lastFailover?.newPrimary, 'n2');

  const direct = new Client({ connectionString: cluster.standby.connectionString() });
  await direct.connect();
  const { rows } = await direct.query<{ id: number }>('select id from writes');
  await direct.end();
  const present = new Set(rows.map((r) => r.id));
  // Writes acknowledged before the kill; the one in flight at the kill may go either way.
  const before = acknowledged.slice(0, killedAt);
  const after = acknowledged.slice(failedOverAt);
  t.same(after.filter((id) => !present.has(id)), [], 'every write acknowledged after the failover is there');
  // Replication here is asynchronous: the standby holds a prefix of the primary's WAL, so only the
  // last commits before the kill can be missing, all of them after the last one that arrived.
  const firstMissing = before.findIndex((id) => !present.has(id));
  const lost = firstMissing === -1 ? [] : before.slice(firstMissing);
  t.ok(lost.every((id) => !present.has(id)), `what was lost is one tail of the commits before the kill (${lost.length} rows)`);
  t.ok(lost.length < 50, 'at most the commits in flight at the kill');
  t.ok(errors.length > 0, 'the writer saw the old sessions fail rather than hang');
});
