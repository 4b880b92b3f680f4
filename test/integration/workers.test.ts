// proxy.workers: 2 — one routing decision in every worker, fences and drains reach every worker, cancels cross workers, limits and /status and /metrics are global, a crashed worker is replaced.

import t from 'tap';
import type { Client } from 'pg';
import { cancelRequest } from '../../src/protocol/startup';
import type { PgfloatStatus } from '../../src/admin/status';
import { operationResult, postOperation, TEST_TOKEN } from '../harness/cli';
import { startCluster } from '../harness/cluster';
import { backendKey, connectClient, queryOnce, rawConnect, rejectionOf, runTool } from '../harness/clients';
import { startPgfloat } from '../harness/pgfloat';
import { eventually, waitForActiveQuery } from '../harness/waiting';
import { captureLog } from '../harness/log-capture';

async function serverAddress(client: Client): Promise<number> {
  const { rows } = await client.query<{ port: number }>('select inet_server_port() as port');
  return rows[0]!.port;
}

function metric(text: string, name: string): number {
  return text
    .split('\n')
    .filter((line) => line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{'))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('relaying on two workers', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { proxy: { workers: 2, maxClientConnections: 40 }, admin: { listen: '127.0.0.1:0', token: TEST_TOKEN } });
  const status = (): PgfloatStatus => proxy.instance.status();
  const clients: Client[] = [];
  t.teardown(() => Promise.all(clients.map((c) => c.end().catch(() => undefined))));
  const open = async (url: string, name: string): Promise<Client> => {
    const c = await connectClient({ connectionString: url, application_name: name });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };

  /** Ends every client and waits until no worker holds a session: the next clients then spread evenly. */
  const closeAll = async (): Promise<void> => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
    await eventually(() => status().workers!.every((w) => w.sessions === 0), 'every session closed');
  };

  t.test('both workers run and take their share of clients, routed by the same decision', async (t) => {
    t.same(status().workers?.map((w) => w.state), ['ready', 'ready']);
    const writers = await Promise.all([0, 1, 2, 3].map((i) => open(proxy.readWriteUrl(), `w-${i}`)));
    const readers = await Promise.all([0, 1].map((i) => open(proxy.readOnlyUrl(), `r-${i}`)));
    for (const c of writers) t.equal(await serverAddress(c), cluster.primary.port, 'read-write: the primary');
    for (const c of readers) t.equal(await serverAddress(c), cluster.standby.port, 'read-only: the standby');
    await eventually(() => status().workers!.every((w) => w.sessions === 3), 'three sessions in each worker');
    // A socket handed over counts at once; what a worker's session is comes with its next report.
    await eventually(() => {
      const { clients, nodes } = status();
      return clients.readWrite + clients.readOnly === 6 && nodes.find((n) => n.name === cluster.primary.name)!.sessions === 4;
    }, 'both workers to report their sessions');
    t.same(status().clients, { readWrite: 4, readOnly: 2 }, '/status counts every worker');
    t.equal(status().nodes.find((n) => n.name === cluster.primary.name)!.sessions, 4);
  });

  t.test('pgbench at 16 clients: the relay work is spread over both workers', async (t) => {
    const url = proxy.readWriteUrl();
    const init = await runTool('pgbench', ['-i', '-s', '1', '-q', url], { timeoutMs: 120_000 });
    t.equal(init.code, 0, init.stderr);
    const before = status().workers!.map((w) => w.relayedBytes);
    const run = await runTool('pgbench', ['-S', '-c', '16', '-j', '2', '-t', '300', '-n', url], { timeoutMs: 120_000 });
    t.equal(run.code, 0, run.stderr);
    t.match(run.stdout, /number of transactions actually processed: 4800\/4800/);
    await eventually(() => status().workers!.every((w, i) => w.relayedBytes > before[i]!), 'both workers to report');
    const shares = status().workers!.map((w, i) => w.relayedBytes - before[i]!);
    const total = shares.reduce((a, b) => a + b, 0);
    for (const [i, share] of shares.entries()) t.ok(share >= total / 4, `worker ${i + 1} relayed a real share: ${share} of ${total} bytes`);
  });

  t.test('a cancel request reaches the backend whichever worker receives it', async (t) => {
    for (const name of ['cancel-a', 'cancel-b']) {
      const client = await open(proxy.readWriteUrl(), name);
      const { processId, secretKey } = backendKey(client);
      const running = client.query('select pg_sleep(60)');
      running.catch(() => undefined);
      await waitForActiveQuery(cluster.primary, name, 'select pg_sleep(60)');
      // Two cancels: the least-loaded choice sends them to different workers, so one of them is not the session's.
      for (let i = 0; i < 2; i++) {
        const conn = await rawConnect(proxy.readWritePort);
        conn.socket.write(cancelRequest(processId, secretKey));
        await conn.closed;
      }
      t.equal((await rejectionOf(running)).code, '57014', `${name}: cancelled`);
    }
  });

  t.test('a fence drops the node\'s sessions in every worker', async (t) => {
    await closeAll();
    const standby = cluster.standby.name;
    const readers = await Promise.all([0, 1, 2, 3].map((i) => open(proxy.readOnlyUrl(), `fenced-${i}`)));
    // A session lock cannot move with its session (sessions.move): these sessions are dropped, not moved.
    await Promise.all(readers.map((c, i) => c.query('SELECT pg_advisory_lock($1)', [i])));
    await eventually(() => status().workers!.every((w) => w.sessions > 0) && (status().nodes.find((n) => n.name === standby)!.sessions ?? 0) >= 4, 'readers in both workers');
    const errors = readers.map((c) => new Promise<Error & { code?: string }>((resolve) => c.once('error', resolve)));
    t.equal(proxy.instance.operator({ command: 'fence', node: standby }).operatorAnswer?.accepted, true);
    for (const err of await Promise.all(errors)) t.equal(err.code, '57P01', `dropped: ${err.message}`);
    await eventually(() => status().nodes.find((n) => n.name === standby)!.sessions === 0, 'no session left on the fenced node in any worker');
    // 'state', or 'state-unknown' when the fencing's own pg_terminate_backend ended the backend while its state was being read.
    const notMoved = (): number => Object.values(status().sessionMoves.notMoved).reduce((a, b) => a + b, 0);
    await eventually(() => notMoved() === 4, 'each worker to report why its sessions could not move');
    proxy.instance.operator({ command: 'unfence', node: standby });
    await eventually(() => status().standbys.includes(standby), 'the standby routed again');
  });

  t.test('connection limits count every worker', async (t) => {
    await closeAll();
    const held = await Promise.all(Array.from({ length: 40 }, (_, i) => open(proxy.readWriteUrl(), `limit-${i}`)));
    t.equal(held.length, 40);
    const err = await rejectionOf(connectClient(proxy.readWriteUrl()));
    t.equal(err.code, '53300', 'the 41st client is refused although each worker holds only 20');
    await closeAll();
  });

  t.test('/metrics adds up every worker\'s counters and processes', async (t) => {
    await closeAll();
    await open(proxy.readWriteUrl(), 'metrics-a');
    await open(proxy.readWriteUrl(), 'metrics-b');
    await eventually(() => status().workers!.every((w) => w.sessions === 1), 'one session in each worker');
    const text = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    t.equal(metric(text, 'pgfloat_client_connections'), 2, 'connections of both workers');
    t.ok(metric(text, 'pgfloat_sessions_established_total') >= 40 + 6 + 2, 'sessions established in both workers');
    t.ok(metric(text, 'pgfloat_relayed_bytes_total') > 0);
    t.equal(metric(text, 'pgfloat_relay_workers'), 2);
    t.ok(metric(text, 'pgfloat_process_cpu_seconds_total') > 0, 'process metrics of all three processes');
    await closeAll();
  });

  t.test('a crashed worker is restarted; only its own sessions are lost', async (t) => {
    const a = await open(proxy.readWriteUrl(), 'crash-a');
    const b = await open(proxy.readWriteUrl(), 'crash-b');
    await eventually(() => status().workers!.every((w) => w.sessions === 1), 'one session in each worker');
    const victim = status().workers![0]!;
    const lost = new Promise<Error>((resolve) => {
      a.once('error', resolve);
      b.once('error', resolve);
    });
    process.kill(victim.pid!, 'SIGKILL');
    await lost;
    const results = await Promise.allSettled([a.query('select 1'), b.query('select 1')]);
    t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'the other worker\'s session goes on');
    await eventually(() => status().workers![0]!.state === 'ready' && status().workers![0]!.pid !== victim.pid, 'a new worker in the slot');
    t.equal(status().workers![0]!.restarts, 1);
    t.same(await queryOnce(proxy.readWriteUrl(), 'select 1 as n'), [{ n: 1 }], 'new clients are served');
    const text = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    t.equal(metric(text, 'pgfloat_relay_worker_exits_total'), 1, 'the crash is counted');
    await closeAll();
  });

  t.test('a switchover moves sessions at transaction boundaries in every worker', async (t) => {
    const idle = await open(proxy.readWriteUrl(), 'drain-idle');
    const busy = await open(proxy.readWriteUrl(), 'drain-busy');
    await eventually(() => status().workers!.every((w) => w.sessions === 1), 'one session in each worker');
    const errors: Error[] = [];
    for (const c of [idle, busy]) c.on('error', (err) => errors.push(err));
    await busy.query('create table if not exists drained (id int)');
    await busy.query('begin');
    await busy.query('insert into drained values (1)');
    const answer = await postOperation(proxy.adminUrl, '/switchover', {});
    t.equal(answer.status, 202, JSON.stringify(answer.json));
    await eventually(() => status().sessionMoves.moving + status().sessionMoves.moved >= 1, 'the idle session to move at once');
    await busy.query('commit');
    const op = await operationResult(proxy.adminUrl, String(answer.json.operation));
    t.equal(op.state, 'succeeded', String(op.result));
    for (const [name, c] of [['idle', idle], ['busy', busy]] as const) {
      const { rows } = await c.query<{ r: boolean }>('select pg_is_in_recovery() as r');
      t.same(rows, [{ r: false }], `the ${name} session moved to the new primary`);
    }
    t.same(errors, [], 'neither client saw an error');
    t.same(await queryOnce(proxy.readWriteUrl(), 'select count(*)::int as n from drained'), [{ n: 1 }], 'the busy transaction committed and reached the new primary');
    await eventually(() => status().sessionMoves.moved === 2, 'both moves counted, one in each worker');
  });

  t.test('stopping pgfloat stops every worker', async (t) => {
    const pids = status().workers!.map((w) => w.pid!);
    await proxy.stop();
    await eventually(() => pids.every((pid) => !alive(pid)), 'the worker processes to exit');
    t.pass('no worker left behind');
  });
});

t.test('a worker that cannot confirm the fence is killed before the promotion goes ahead', async (t) => {
  const cluster = await startCluster(t);
  const log = captureLog('info');
  const proxy = await startPgfloat(t, cluster, { proxy: { workers: 2 } }, { log: log.logger });
  const status = (): PgfloatStatus => proxy.instance.status();
  const writers = await Promise.all(['frozen-a', 'frozen-b'].map((name) => connectClient({ connectionString: proxy.readWriteUrl(), application_name: name })));
  for (const c of writers) c.on('error', () => undefined);
  t.teardown(() => Promise.all(writers.map((c) => c.end().catch(() => undefined))));
  await eventually(() => status().workers!.every((w) => w.sessions === 1), 'a writer in each worker');
  const frozen = status().workers![0]!;
  // A stopped worker receives the drop but cannot answer it, as a worker stuck in a loop would not.
  process.kill(frozen.pid!, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(frozen.pid!, 'SIGCONT');
    } catch {
      // already gone, as expected
    }
  });
  cluster.primary.kill('SIGKILL');
  await eventually(() => status().primary === cluster.standby.name, 'failover to the standby', 60_000);
  const messages = log.lines().map((l) => String(l.msg));
  const killed = messages.findIndex((m) => m.startsWith('relay worker did not answer in time'));
  const promoting = messages.findIndex((m) => m.startsWith('failover: old primary fenced, promoting'));
  t.ok(killed >= 0, 'the frozen worker was killed');
  t.ok(promoting > killed, 'and only then was the standby promoted');
  await eventually(() => status().workers![0]!.state === 'ready' && status().workers![0]!.pid !== frozen.pid, 'a new worker in its slot');
  t.same(await queryOnce(proxy.readWriteUrl(), 'select pg_is_in_recovery() as r'), [{ r: false }], 'writes reach the new primary');
});
