import t from 'tap';
import { Client } from 'pg';
import { startCluster } from '../harness/cluster';
import { startPgfloat } from '../harness/pgfloat';

t.test('read-write reaches the primary, read-only the standby', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  for (const [url, expected] of [[proxy.readWriteUrl(), false], [proxy.readOnlyUrl(), true]] as const) {
    const client = new Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query<{ r: boolean }>('select pg_is_in_recovery() as r');
    t.equal(rows[0]!.r, expected);
    await client.end();
  }
});
