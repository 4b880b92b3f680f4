// The `pg` client through the read-write port: both query protocols, COPY sub-protocol, LISTEN/NOTIFY,
// large results, transaction error handling and visibility of committed data on the primary.

import t from 'tap';
import type { Notification } from 'pg';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { connectClient, queryOnce, rejectionOf } from '../harness/clients';

t.test('pg client through pgfloat', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const url = proxy.readWriteUrl();

  t.test('simple query protocol', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end());
    // Several statements in one Query message are only allowed by the simple protocol.
    const results = (await client.query('select 1 as a; select pg_is_in_recovery() as r, current_setting(\'port\')::int as port')) as unknown as Array<{
      rows: Array<Record<string, unknown>>;
    }>;
    t.equal(results.length, 2, 'two result sets from one simple query');
    t.same(results[0]!.rows, [{ a: 1 }]);
    t.same(results[1]!.rows, [{ r: false, port: cluster.primary.port }], 'answered by the primary');
  });

  t.test('extended protocol: parameters and a named prepared statement reused', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end());
    const { rows } = await client.query<{ sum: number; label: string }>('select $1::int + $2::int as sum, $3::text as label', [40, 2, 'x\'y"z']);
    t.same(rows, [{ sum: 42, label: 'x\'y"z' }]);
    const statement = { name: 'pgfloat_add_one', text: 'select $1::int + 1 as n' };
    for (const value of [1, 10, 100]) {
      const r = await client.query<{ n: number }>({ ...statement, values: [value] });
      t.equal(r.rows[0]!.n, value + 1, `prepared statement run with ${value}`);
    }
    const prepared = await client.query<{ name: string; statement: string }>('select name, statement from pg_prepared_statements');
    t.same(prepared.rows, [{ name: 'pgfloat_add_one', statement: statement.text }], 'exactly one server-side prepared statement, parsed once');
    const nulls = await client.query<{ v: string | null }>('select $1::text as v', [null]);
    t.same(nulls.rows, [{ v: null }], 'NULL parameters');
  });

  t.test('COPY sub-protocol messages are relayed', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end());
    await client.query('create table copy_pg (id int primary key)');
    // pg answers CopyInResponse with CopyFail when no stream is attached: the server must see it.
    const err = await rejectionOf(client.query('copy copy_pg from stdin'));
    t.equal(err.code, '57014', 'the CopyFail reached the server, which cancelled the COPY');
    // CopyOutResponse / CopyData / CopyDone go through; pg discards the data but the query completes.
    const out = await client.query('copy (select generate_series(1, 1000)) to stdout');
    t.equal(out.rowCount, 1000, 'COPY TO STDOUT completed with its row count');
    const { rows } = await client.query<{ n: number }>('select 7 as n');
    t.same(rows, [{ n: 7 }], 'connection still usable after COPY');
  });

  t.test('LISTEN/NOTIFY between two proxied connections', async (t) => {
    const listener = await connectClient(url);
    const notifier = await connectClient(url);
    t.teardown(() => Promise.all([listener.end(), notifier.end()]));
    const received: Notification[] = [];
    listener.on('notification', (n) => received.push(n));
    await listener.query('listen pgfloat_channel');
    await notifier.query(`select pg_notify('pgfloat_channel', 'hello through the proxy')`);
    await notifier.query(`notify pgfloat_channel, 'second'`);
    await eventually(() => received.length >= 2, 'two notifications', 10_000);
    t.same(
      received.map((n) => [n.channel, n.payload]),
      [
        ['pgfloat_channel', 'hello through the proxy'],
        ['pgfloat_channel', 'second'],
      ],
    );
    t.equal(received[0]!.processId, (notifier as unknown as { processID: number }).processID, 'sent by the notifier backend');
  });

  t.test('a result of several MB arrives complete', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end());
    const { rows } = await client.query<{ i: number; s: string }>(`select i, repeat(chr(97 + i % 26), 1000) as s from generate_series(1, 10000) as i`);
    t.equal(rows.length, 10000);
    let total = 0;
    let intact = true;
    for (let k = 0; k < rows.length; k++) {
      const row = rows[k]!;
      total += row.s.length;
      if (row.i !== k + 1 || row.s !== String.fromCharCode(97 + (row.i % 26)).repeat(1000)) intact = false;
    }
    t.equal(total, 10_000_000, '10 MB of text');
    t.ok(intact, 'every row in order with its own content');
  });

  t.test('an error aborts the transaction until ROLLBACK', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end());
    await client.query('create table tx_abort (id int)');
    await client.query('begin');
    await client.query('insert into tx_abort values (1)');
    const division = await rejectionOf(client.query('select 1 / 0'));
    t.equal(division.code, '22012', 'division_by_zero');
    const aborted = await rejectionOf(client.query('select 1'));
    t.equal(aborted.code, '25P02', 'in_failed_sql_transaction');
    const abortedExtended = await rejectionOf(client.query('select $1::int', [1]));
    t.equal(abortedExtended.code, '25P02', 'also for the extended protocol');
    await client.query('rollback');
    const { rows } = await client.query<{ n: string }>('select count(*) as n from tx_abort');
    t.same(rows, [{ n: '0' }], 'usable again, and the insert was rolled back');
  });

  t.test('a transaction committed through the proxy is visible on the primary directly', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end());
    await client.query('create table committed (id int, note text)');
    await client.query('begin');
    await client.query('insert into committed values ($1, $2), ($3, $4)', [1, 'one', 2, 'two']);
    const before = await queryOnce<{ n: string }>(cluster.primary.connectionString(), 'select count(*) as n from committed');
    t.same(before, [{ n: '0' }], 'not visible before commit');
    await client.query('commit');
    const after = await queryOnce<{ id: number; note: string }>(cluster.primary.connectionString(), 'select id, note from committed order by id');
    t.same(after, [
      { id: 1, note: 'one' },
      { id: 2, note: 'two' },
    ]);
  });
});
