// Nothing outlives its client: sessions, cancel keys and server backends are released after normal
// closes, abrupt client disconnects and server-side terminations.

import t from 'tap';
import { Socket } from 'node:net';
import { Client } from 'pg';
import { startupMessage } from '../../src/protocol/startup';
import type { LocalNode } from '../../src/sandbox/local-cluster';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { connectClient, inBatches, queryOnce, rawConnect } from '../harness/clients';

const BACKENDS_SQL = `select count(*)::int as n from pg_stat_activity
  where backend_type = 'client backend' and application_name <> 'pgfloat-monitor' and pid <> pg_backend_pid()`;

async function clientBackends(node: LocalNode): Promise<number> {
  return (await queryOnce<{ n: number }>(node.connectionString(), BACKENDS_SQL))[0]!.n;
}

t.test('socket and backend leaks', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const { instance } = proxy;

  async function expectNothingLeft(t: tap.Test, what: string): Promise<void> {
    await eventually(() => instance.relay.snapshot().open === 0, `${what}: sessions to close`);
    t.equal(instance.relay.snapshot().open, 0, `${what}: no sessions`);
    t.equal(instance.relay.snapshot().cancelKeys, 0, `${what}: no cancel keys`);
    await eventually(async () => (await clientBackends(cluster.primary)) === 0, `${what}: primary backends to exit`);
    await eventually(async () => (await clientBackends(cluster.standby)) === 0, `${what}: standby backends to exit`);
    t.pass(`${what}: no client backends on either server`);
  }

  t.test('300 short connections', async (t) => {
    let answered = 0;
    const indexes = Array.from({ length: 300 }, (_, i) => i);
    await inBatches(indexes, 20, async (i) => {
      // Every fifth goes through the read-only port, so both paths are exercised.
      const url = i % 5 === 4 ? proxy.readOnlyUrl() : proxy.readWriteUrl();
      const client = new Client({ connectionString: url, application_name: `leak-${i}` });
      await client.connect();
      const { rows } = await client.query<{ i: number }>('select $1::int as i', [i]);
      if (rows[0]!.i === i) answered++;
      await client.end();
    });
    t.equal(answered, 300, 'every connection got its own answer');
    await expectNothingLeft(t, 'after 300 connections');
  });

  t.test('clients that vanish without a Terminate', async (t) => {
    // After startup, idle.
    const idle = await rawConnect(proxy.readWritePort);
    idle.socket.write(startupMessage({ user: 'postgres', database: 'postgres', application_name: 'leak-abrupt' }));
    await idle.waitForMessage('Z');
    // Inside an open transaction holding a lock.
    const inTxSocket = new Socket();
    const inTx = await connectClient({ connectionString: proxy.readWriteUrl(), application_name: 'leak-abrupt', stream: () => inTxSocket });
    await inTx.query('create table locked (id int)');
    await inTx.query('begin');
    await inTx.query('lock table locked in access exclusive mode');
    await eventually(async () => (await clientBackends(cluster.primary)) === 2, 'both backends to exist on the primary');
    t.equal(instance.relay.snapshot().open, 2);

    idle.socket.destroy();
    inTxSocket.destroy();
    await expectNothingLeft(t, 'after abrupt disconnects');
    const lock = await queryOnce<{ n: number }>(cluster.primary.connectionString(), 'select count(*)::int as n from locked');
    t.same(lock, [{ n: 0 }], 'the lock was released with the backend');

    // Mid-startup: gone before the server has answered.
    await inBatches(Array.from({ length: 20 }, (_, i) => i), 10, async () => {
      const conn = await rawConnect(proxy.readWritePort);
      conn.socket.write(startupMessage({ user: 'postgres', database: 'postgres', application_name: 'leak-startup' }));
      conn.socket.destroy();
    });
    await expectNothingLeft(t, 'after clients vanished during startup');
  });

  t.test('a server-side termination reaches the client and ends the session', async (t) => {
    const client = await connectClient({ connectionString: proxy.readWriteUrl(), application_name: 'leak-terminated' });
    t.equal(instance.relay.snapshot().open, 1);
    const pid = (client as unknown as { processID: number }).processID;
    const [{ ok }] = (await queryOnce<{ ok: boolean }>(cluster.primary.connectionString(), 'select pg_terminate_backend($1) as ok', [pid])) as [{ ok: boolean }];
    t.ok(ok, 'pg_terminate_backend succeeded');
    await eventually(() => client.errors.length > 0, 'the client to see the termination');
    await eventually(() => /terminated/.test(client.errors.at(-1)!.message), 'the connection to be closed');
    t.equal(client.errors[0]!.code, '57P01', "the server's FATAL admin_shutdown is relayed before the close");
    await expectNothingLeft(t, 'after the termination');
    await client.end().catch(() => undefined);
  });
});
