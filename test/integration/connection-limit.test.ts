// proxy.maxClientConnections: clients over the limit are refused with 53300 in a way libpq can
// report, and CancelRequests still get through while the proxy is full (as with PostgreSQL).

import t from 'tap';
import { cancelRequest, startupMessage } from '../../src/protocol/startup';
import { SSL_REQUEST_CODE } from '../../src/protocol/codes';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { waitForActiveQuery } from '../harness/waiting';
import { backendKey, connectClient, parseErrorResponse, queryOnce, rawConnect, rejectionOf, runPsql } from '../harness/clients';

t.test('connection limit', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { proxy: { maxClientConnections: 3 } });

  const sleeper = await connectClient({ connectionString: proxy.readWriteUrl(), application_name: 'limit-sleeper' });
  const others = [await connectClient(proxy.readWriteUrl()), await connectClient(proxy.readOnlyUrl())];
  t.teardown(() => Promise.all([sleeper, ...others].map((c) => c.end().catch(() => undefined))));
  t.equal(proxy.instance.relay.snapshot().open, 3, 'the proxy is full');

  t.test('pg over the limit gets 53300', async (t) => {
    const err = await rejectionOf(connectClient(proxy.readWriteUrl()));
    t.equal(err.code, '53300', 'too_many_connections');
    t.match(err.message, /sorry, too many clients already/);
  });

  t.test('psql over the limit reports the reason', async (t) => {
    for (const url of [proxy.readWriteUrl(), `${proxy.readOnlyUrl()}?sslmode=disable`]) {
      const r = await runPsql(url, ['-c', 'select 1']);
      t.equal(r.code, 2, 'psql cannot connect');
      t.match(r.stderr, /sorry, too many clients already/, 'and says why', { stderr: r.stderr });
    }
  });

  t.test('SSL negotiation is declined first, then the startup packet is refused', async (t) => {
    const conn = await rawConnect(proxy.readWritePort);
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8, 0);
    ssl.writeInt32BE(SSL_REQUEST_CODE, 4);
    conn.socket.write(ssl);
    t.equal((await conn.waitForBytes(1)).toString('latin1'), 'N');
    conn.socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
    const { data } = await conn.closed;
    const error = parseErrorResponse(data.subarray(1));
    t.equal(error.code, '53300');
  });

  t.test('a CancelRequest still gets through while the proxy is full', async (t) => {
    const { processId, secretKey } = backendKey(sleeper);
    const running = sleeper.query('select pg_sleep(60)');
    running.catch(() => undefined);
    await waitForActiveQuery(cluster.primary, 'limit-sleeper', 'select pg_sleep(60)');
    const conn = await rawConnect(proxy.readWritePort);
    conn.socket.write(cancelRequest(processId, secretKey));
    const { data } = await conn.closed;
    t.equal(data.length, 0, 'the cancel connection is closed without an answer');
    t.equal((await rejectionOf(running)).code, '57014', 'the query was cancelled');
  });

  t.test('refusals are counted and a freed slot can be used again', async (t) => {
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    const refused = /pgfloat_client_refusals_total\{listener="readWrite",reason="too-many-connections"\} (\d+)/.exec(metrics);
    t.ok(refused && Number(refused[1]) >= 3, 'too-many-connections refusals counted', { found: refused?.[0] });
    await others.pop()!.end();
    await eventually(() => proxy.instance.relay.snapshot().open === 2, 'a slot to free up');
    t.same(await queryOnce(proxy.readOnlyUrl(), 'select 1 as n'), [{ n: 1 }], 'a new client gets in');
  });
});
