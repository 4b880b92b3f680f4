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

t.test('with busy polling on, sessions relay the same way', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { proxy: { busyPollUs: 200 } });
  const client = new Client({ connectionString: proxy.readWriteUrl() });
  await client.connect();
  let sum = 0;
  for (let i = 1; i <= 200; i++) {
    const { rows } = await client.query<{ n: number }>('select $1::int as n', [i]);
    sum += rows[0]!.n;
  }
  t.equal(sum, 200 * 201 / 2, 'every answer came back to the right query');
  await client.end();
});
