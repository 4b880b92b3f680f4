// Query cancellation through pgfloat: a raw CancelRequest with pg's key, psql on SIGINT, and unknown keys.

import t from 'tap';
import { Client } from 'pg';
import { startCluster } from '../harness/cluster';
import { startPgfloat } from '../harness/pgfloat';
import { backendKey, connectClient, queryOnce, rejectionOf, sendCancel, startTool } from '../harness/clients';
import { eventually, holdsFor, waitForActiveQuery } from '../harness/waiting';

t.test('cancellation through pgfloat', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);

  t.test('a raw CancelRequest with the key pg received cancels the query', async (t) => {
    const client = await connectClient({ connectionString: proxy.readWriteUrl(), application_name: 'cancel-pg' });
    t.teardown(() => client.end());
    const { processId, secretKey } = backendKey(client);
    t.ok(proxy.instance.relay.snapshot().cancelKeys >= 1, 'the proxy registered the session key');
    const running = client.query('select pg_sleep(60)');
    running.catch(() => undefined);
    const pid = await waitForActiveQuery(cluster.primary, 'cancel-pg', 'select pg_sleep(60)');
    t.equal(pid, processId, 'the client sees the server backend pid in BackendKeyData');
    const answer = await sendCancel(proxy.readWritePort, processId, secretKey);
    t.equal(answer.length, 0, 'nothing is written back on the cancel connection');
    const err = await rejectionOf(running);
    t.equal(err.code, '57014', 'query_canceled');
    t.match(err.message, /canceling statement due to user request/);
    const { rows } = await client.query<{ n: number }>('select 1 as n');
    t.same(rows, [{ n: 1 }], 'the session survives the cancel');
  });

  t.test('psql cancels on SIGINT through the proxy', async (t) => {
    const url = `${proxy.readWriteUrl()}?application_name=cancel-psql`;
    const psql = startTool('psql', [url, '-X', '-v', 'ON_ERROR_STOP=1', '-c', 'select pg_sleep(60)'], { timeoutMs: 60_000 });
    t.teardown(() => {
      if (psql.child.exitCode === null) psql.child.kill('SIGKILL');
    });
    await waitForActiveQuery(cluster.primary, 'cancel-psql', 'select pg_sleep(60)');
    psql.child.kill('SIGINT');
    const result = await psql.result;
    t.match(result.stderr, /canceling statement due to user request/);
    t.equal(result.code, 1, 'psql reports the failed statement');
    await eventually(
      async () => (await queryOnce(cluster.primary.connectionString(), `select 1 from pg_stat_activity where application_name = 'cancel-psql'`)).length === 0,
      'the psql backend to exit',
    );
  });

  t.test('a CancelRequest with an unknown key is dropped and the query keeps running', async (t) => {
    const client = await connectClient({ connectionString: proxy.readWriteUrl(), application_name: 'cancel-unknown' });
    t.teardown(() => client.end());
    const { processId, secretKey } = backendKey(client);
    const running = client.query('select pg_sleep(60)');
    let settled = false;
    running.then(
      () => (settled = true),
      () => (settled = true),
    );
    await waitForActiveQuery(cluster.primary, 'cancel-unknown', 'select pg_sleep(60)');

    const wrongKey = Buffer.from(secretKey);
    wrongKey.writeInt32BE(secretKey.readInt32BE(0) ^ 0x5a5a5a5a, 0);
    t.equal((await sendCancel(proxy.readWritePort, processId, wrongKey)).length, 0, 'right pid, wrong key: closed without an answer');
    t.equal((await sendCancel(proxy.readWritePort, processId ^ 0x7fff, secretKey)).length, 0, 'unknown pid: closed without an answer');
    t.equal((await sendCancel(proxy.readOnlyPort, 12345, Buffer.from([1, 2, 3, 4]))).length, 0, 'on the read-only port too');

    const stillActive = async (): Promise<boolean> =>
      (
        await queryOnce(
          cluster.primary.connectionString(),
          `select 1 from pg_stat_activity where state = 'active' and pid = $1 and query = 'select pg_sleep(60)'`,
          [processId],
        )
      ).length === 1;
    const quiet = await holdsFor(
      1000,
      'a cancel wrongly forwarded is one connection to the server and a signal: pg_sleep would end well within a second',
      async () => !settled && (await stillActive()),
    );
    t.ok(quiet.held, `the query kept running after the bad cancels: ${quiet.summary}`);
    t.notOk(settled, 'the query has not ended');
    t.ok(await stillActive(), 'the backend still runs the query');

    // The right key still works afterwards, which also ends the sleep.
    await sendCancel(proxy.readWritePort, processId, secretKey);
    t.equal((await rejectionOf(running)).code, '57014');
  });

  t.test('keys are forgotten when sessions end', async (t) => {
    await eventually(() => proxy.instance.relay.snapshot().open === 0, 'sessions to close');
    t.equal(proxy.instance.relay.snapshot().cancelKeys, 0, 'no cancel keys left in the registry');
    const client = new Client({ connectionString: proxy.readWriteUrl() });
    await client.connect();
    t.equal(proxy.instance.relay.snapshot().cancelKeys, 1, 'one key while one session is open');
    await client.end();
    await eventually(() => proxy.instance.relay.snapshot().cancelKeys === 0, 'the key to be unregistered');
    t.pass('unregistered after the session ended');
  });
});
