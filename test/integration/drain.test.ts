// Draining a node's sessions at transaction boundaries: idle, mid-transaction, past the deadline, pipelined, COPY, aborted.

import t from 'tap';
import { LocalRelay } from '../../src/proxy/local-relay';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { SqlState } from '../../src/protocol/codes';
import { startupMessage } from '../../src/protocol/startup';
import { SessionRegistry, type TrackedSession } from '../../src/proxy/session-registry';
import { startCluster } from '../harness/cluster';
import { freezePid } from '../harness/faults';
import { message } from '../harness/wire';
import { eventually, startPgfloat } from '../harness/pgfloat';
import type { Refusal } from '../../src/protocol/refusal';
import { holdsFor, waitForActiveQuery } from '../harness/waiting';
import {
  connectClient,
  parseErrorResponse,
  queryOnce,
  rawConnect,
  rejectionOf,
  runPsql,
  simpleQuery,
  sleep,
  splitMessages,
  startTool,
  type RawConversation,
} from '../harness/clients';

const MESSAGE = 'terminating connection: the primary n1 is switching over to another server; reconnect';
const refusal: Refusal = { reason: 'shutting-down', code: SqlState.adminShutdown, message: MESSAGE };
/** Why a few hundred ms show that a drain leaves a busy session alone (session-end.ts). */
const WRONG_CLOSE_SHOWS = 'a session wrongly closed goes at once, its client told within FATAL_DELAY_MS, 200 ms';

/** Parse (unnamed, no parameter types), Bind (no parameters), Describe portal, Execute, Sync. */
function extendedQuery(sql: string): Buffer {
  return Buffer.concat([
    message('P', Buffer.concat([Buffer.from(`\0${sql}\0`), Buffer.from([0, 0])])),
    message('B', Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])),
    message('D', 'P\0'),
    message('E', Buffer.from([0, 0, 0, 0, 0])),
    message('S'),
  ]);
}

/** A raw protocol session through the proxy (trust auth), after its first ReadyForQuery. */
async function rawSession(port: number, applicationName: string): Promise<RawConversation> {
  const conn = await rawConnect(port);
  conn.socket.write(startupMessage({ user: 'postgres', database: 'postgres', application_name: applicationName }));
  await conn.waitForMessage('Z');
  return conn;
}

/** A DataRow's last column, as text. */
function lastColumn(dataRow: Buffer): string {
  let offset = 2;
  let value = '';
  for (let column = dataRow.readInt16BE(0); column > 0; column--) {
    const length = dataRow.readInt32BE(offset);
    value = length < 0 ? '' : dataRow.toString('utf8', offset + 4, offset + 4 + length);
    offset += 4 + Math.max(length, 0);
  }
  return value;
}

/** The messages received after the startup's ReadyForQuery. */
function afterStartup(data: Buffer): Array<{ type: string; body: Buffer }> {
  const all = splitMessages(data);
  return all.slice(all.findIndex((m) => m.type === 'Z') + 1);
}

t.test('draining a node closes its sessions at transaction boundaries', async (t) => {
  const cluster = await startCluster(t);
  // A primary that misses heartbeats is held, not failed over, for as long as these tests need it to be.
  const proxy = await startPgfloat(t, cluster, { monitor: { failuresBeforeDown: 30 }, proxy: { workers: 1 } });
  const relay = proxy.instance.relay;
  if (!(relay instanceof LocalRelay)) throw new Error('these tests drive the in-process relay (proxy.workers: 1)');
  const sessions = relay.sessions;
  const node = cluster.primary.name;
  const url = proxy.readWriteUrl();
  const direct = cluster.primary.connectionString();
  await queryOnce(direct, 'create table drained (id int primary key)');
  const backends = async (applicationName: string): Promise<number> =>
    (await queryOnce(direct, 'select 1 from pg_stat_activity where application_name = $1', [applicationName])).length;

  t.beforeEach(async () => {
    await eventually(() => sessions.countOn(node) === 0, 'the previous test to leave no session on the primary');
  });

  t.test('no session: resolves at once', async (t) => {
    t.same(await sessions.drainNode(node, refusal, 60_000), { atBoundary: 0, cut: 0 });
  });

  t.test('an idle client gets a FATAL 57P01 and its backend ends', async (t) => {
    const client = await connectClient({ connectionString: url, application_name: 'drain-idle' });
    t.teardown(() => client.end().catch(() => undefined));
    t.same(await sessions.drainNode(node, refusal, 10_000), { atBoundary: 1, cut: 0 });
    await eventually(() => client.errors.length > 0, 'the client to see the error');
    const error = client.errors[0]! as Error & { code?: string; severity?: string };
    t.equal(error.code, '57P01', 'admin_shutdown');
    t.equal(error.severity, 'FATAL');
    t.equal(error.message, MESSAGE);
    await eventually(async () => (await backends('drain-idle')) === 0, 'the server backend to exit (it was sent Terminate)');
  });

  t.test('a transaction in progress is left to commit, then closed', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end().catch(() => undefined));
    await client.query('begin');
    await client.query('insert into drained values (1)');
    const draining = sessions.drainNode(node, refusal, 20_000);
    const open = await holdsFor(500, WRONG_CLOSE_SHOWS, () => sessions.countOn(node) === 1 && client.errors.length === 0);
    t.ok(open.held, `left alone inside its transaction: ${open.summary}`);
    t.equal(sessions.countOn(node), 1, 'still open inside its transaction');
    t.same(client.errors, [], 'and told nothing yet');
    await client.query('insert into drained values (2)');
    await client.query('commit');
    t.pass('COMMIT succeeded');
    t.same(await draining, { atBoundary: 1, cut: 0 }, 'closed at the boundary right after');
    await eventually(() => client.errors.length > 0, 'the client to see the error');
    t.equal(client.errors[0]!.code, '57P01');
    t.same(await queryOnce(direct, 'select id from drained where id in (1, 2) order by id'), [{ id: 1 }, { id: 2 }], 'both rows committed');
    t.equal((await rejectionOf(client.query('select 1'))).message.length > 0, true, 'the next query fails');
  });

  t.test('a transaction still open at the deadline is terminated and not committed', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end().catch(() => undefined));
    await client.query('begin');
    await client.query('insert into drained values (3)');
    const draining = sessions.drainNode(node, refusal, 1_500);
    // Not before the deadline: an idle-in-transaction session is no boundary.
    const open = await holdsFor(500, WRONG_CLOSE_SHOWS, () => sessions.countOn(node) === 1 && client.errors.length === 0);
    t.ok(open.held, `left open until the deadline: ${open.summary}`);
    t.same(await draining, { atBoundary: 0, cut: 1 }, 'cut at the deadline');
    await eventually(() => client.errors.length > 0, 'the client to see the termination');
    // Idle in a transaction is a server message boundary: terminate() can say why.
    t.equal(client.errors[0]!.code, '57P01', 'terminated with an ErrorResponse, not a bare EOF');
    await rejectionOf(client.query('commit'));
    t.same(await queryOnce(direct, 'select id from drained where id = 3'), [], 'the insert was not committed');
  });

  t.test("an aborted transaction (status 'E') is not idle: closed only after ROLLBACK", async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end().catch(() => undefined));
    await client.query('begin');
    t.equal((await rejectionOf(client.query('select 1 / 0'))).code, '22012');
    const draining = sessions.drainNode(node, refusal, 20_000);
    const open = await holdsFor(500, WRONG_CLOSE_SHOWS, () => sessions.countOn(node) === 1 && client.errors.length === 0);
    t.ok(open.held, `left alone while aborted: ${open.summary}`);
    t.equal(sessions.countOn(node), 1, 'still open while aborted');
    t.same(client.errors, []);
    t.equal((await rejectionOf(client.query('select 1'))).code, '25P02', 'still in its failed transaction');
    await client.query('rollback');
    t.same(await draining, { atBoundary: 1, cut: 0 });
    await eventually(() => client.errors.length > 0, 'the client to see the error');
    t.equal(client.errors[0]!.code, '57P01');
  });

  t.test('pipelined extended-protocol queries in flight finish before the FATAL', async (t) => {
    const conn = await rawSession(proxy.readWritePort, 'drain-pipelined');
    t.teardown(() => conn.socket.destroy());
    conn.socket.write(
      Buffer.concat([
        extendedQuery('select pg_sleep(0.5), 42 as answer'),
        extendedQuery('select 43 as answer'),
        simpleQuery('select pg_sleep(0.3); select 44 as answer'),
      ]),
    );
    await waitForActiveQuery(cluster.primary, 'drain-pipelined', 'select pg_sleep(0.5), 42 as answer');
    t.same(await sessions.drainNode(node, refusal, 20_000), { atBoundary: 1, cut: 0 });
    const { data } = await conn.closed;
    const messages = afterStartup(data);
    const types = messages.map((m) => m.type).join('');
    t.equal(types, '12TDCZ' + '12TDCZ' + 'TDCTDCZ' + 'E', 'every result and ReadyForQuery, then one ErrorResponse, then the close');
    const answers = messages.filter((m) => m.type === 'D').map((m) => lastColumn(m.body));
    t.same(answers, ['42', '43', '', '44'], 'the answers, in order');
    t.match(parseErrorResponse(messages.at(-1)!.body), { code: '57P01', severity: 'FATAL', message: MESSAGE });
  });

  t.test('COPY FROM STDIN in progress is not cut until it finishes', async (t) => {
    const conn = await rawSession(proxy.readWritePort, 'drain-copy');
    t.teardown(() => conn.socket.destroy());
    conn.socket.write(simpleQuery('copy drained from stdin'));
    const from = conn.received().length;
    await conn.waitForMessage('G', { from });
    conn.socket.write(Buffer.concat([message('d', '100\n'), message('d', '101\n')]));
    const draining = sessions.drainNode(node, refusal, 20_000);
    const open = await holdsFor(500, WRONG_CLOSE_SHOWS, () => sessions.countOn(node) === 1 && !conn.socket.destroyed);
    t.ok(open.held, `left alone in the middle of the COPY: ${open.summary}`);
    t.equal(sessions.countOn(node), 1, 'still open in the middle of the COPY');
    conn.socket.write(Buffer.concat([message('d', '102\n'), message('c')]));
    t.same(await draining, { atBoundary: 1, cut: 0 });
    const { data } = await conn.closed;
    const types = afterStartup(data).map((m) => m.type).join('');
    t.equal(types, 'GCZE', 'CopyInResponse, CommandComplete, ReadyForQuery, then the ErrorResponse');
    t.same(await queryOnce(direct, 'select id from drained where id >= 100 order by id'), [{ id: 100 }, { id: 101 }, { id: 102 }], 'all three rows copied');
  });

  t.test('COPY FROM STDIN through Execute: the Sync swallowed by copy mode is not waited for', async (t) => {
    const conn = await rawSession(proxy.readWritePort, 'drain-extended-copy');
    t.teardown(() => conn.socket.destroy());
    // As libpq's PQexecParams + PQputCopyEnd: P B D E S, then CopyData, CopyDone and one more Sync.
    conn.socket.write(extendedQuery('copy drained from stdin'));
    await conn.waitForMessage('G', { from: conn.received().length });
    const draining = sessions.drainNode(node, refusal, 5_000);
    const open = await holdsFor(300, WRONG_CLOSE_SHOWS, () => sessions.countOn(node) === 1 && !conn.socket.destroyed);
    t.ok(open.held, `left alone in the middle of the COPY: ${open.summary}`);
    t.equal(sessions.countOn(node), 1, 'still open in the middle of the COPY');
    conn.socket.write(Buffer.concat([message('d', '200\n'), message('c'), message('S')]));
    t.same(await draining, { atBoundary: 1, cut: 0 }, 'closed at the boundary, not at the deadline');
    const { data } = await conn.closed;
    t.equal(afterStartup(data).map((m) => m.type).join(''), '12nGCZE', 'one ReadyForQuery for the two Syncs, then the ErrorResponse');
    t.same(await queryOnce(direct, 'select id from drained where id = 200'), [{ id: 200 }]);
  });

  t.test('psql: the running statement finishes, the next one is refused', async (t) => {
    const psql = startTool('psql', [`${url}?application_name=drain-psql`, '-X', '-v', 'ON_ERROR_STOP=1', '-A', '-t', '-c', "select 'first', pg_sleep(0.8)", '-c', "select 'second'"]);
    await eventually(() => sessions.countOn(node) === 1, 'psql to connect');
    // Drained before its first statement runs, an idle psql would be closed with nothing run.
    await waitForActiveQuery(cluster.primary, 'drain-psql', "select 'first', pg_sleep(0.8)");
    t.same(await sessions.drainNode(node, refusal, 20_000), { atBoundary: 1, cut: 0 });
    const r = await psql.result;
    t.match(r.stdout, /first/, 'the first statement ran to completion');
    t.notMatch(r.stdout, /second/, 'the second never ran');
    t.match(r.stderr, /switching over/, `psql reports why (exit ${r.code})`);
  });

  t.test('\\copy from a file through psql finishes before the close', async (t) => {
    const count = 1_000_000;
    const work = mkdtempSync(join(tmpdir(), 'pgfloat-drain-'));
    t.teardown(() => rmSync(work, { recursive: true, force: true }));
    const file = join(work, 'rows.txt');
    writeFileSync(file, Array.from({ length: count }, (_, i) => String(1000 + i)).join('\n') + '\n');
    const psql = startTool('psql', [url, '-X', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy drained from '${file}'`]);
    const copying = "select 1 from pg_stat_activity where query ilike 'copy%drained%stdin%' and state = 'active'";
    await eventually(async () => (await queryOnce(direct, copying)).length > 0, 'the COPY to start', 10_000);
    const result = await sessions.drainNode(node, refusal, 30_000);
    const r = await psql.result;
    t.same(result, { atBoundary: 1, cut: 0 }, 'closed at the boundary after the COPY');
    t.match(r.stdout, new RegExp(`COPY ${count}`), 'psql saw the COPY complete');
    t.same(await queryOnce(direct, 'select count(*)::int as n from drained where id >= 1000'), [{ n: count }], 'every row is there');
  });

  t.test('a session that attaches while the node drains is refused too', async (t) => {
    const busy = await connectClient(url);
    t.teardown(() => busy.end().catch(() => undefined));
    await busy.query('begin');
    const draining = sessions.drainNode(node, refusal, 20_000);
    const late = await rejectionOf(connectClient(url));
    t.equal((late as Error & { code?: string }).code, '57P01', 'the newcomer is refused with the drain reason');
    await busy.query('commit');
    t.same(await draining, { atBoundary: 2, cut: 0 }, 'the refused newcomer counts as closed cleanly');
  });

  t.test('a newcomer whose startup the server has not answered yet is held and routed again, not refused', async (t) => {
    const router = proxy.instance.router;
    const busy = await connectClient(url);
    t.teardown(() => busy.end().catch(() => undefined));
    await busy.query('begin'); // keeps the drain open
    // A stopped postmaster still completes TCP handshakes (the kernel's backlog) but answers no startup packet.
    const frozen = freezePid(t, cluster.primary.postmasterPid()!);
    const newcomer = connectClient(url);
    await eventually(() => sessions.countOn(node) === 2, 'the newcomer to be attached to n1, unanswered');
    // Its running backends still answer, so the monitor's connection is ended: its next one goes
    // unanswered, n1 turns suspect and the failover core holds new writers, as a switchover does.
    await busy.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pgfloat-monitor'");
    await eventually(() => router.writesHeld, 'n1 to miss a heartbeat and writes to be held');
    const draining = sessions.drainNode(node, refusal, 20_000);
    await eventually(() => sessions.countOn(node) === 1, 'the newcomer to leave n1');
    t.equal(router.heldClients, 1, 'it waits with the held clients');
    await busy.query('commit');
    t.same(await draining, { atBoundary: 1, cut: 0 }, 'the rerouted newcomer is not counted');
    // n1 answers heartbeats again: the core releases the held newcomer to it.
    frozen.thaw();
    const client = await newcomer;
    t.teardown(() => client.end().catch(() => undefined));
    t.same((await client.query('select 1 as one')).rows, [{ one: 1 }], 'the newcomer connected and works');
    t.same(client.errors, []);
  });

  t.test('pooled pg clients in a query loop: no FATAL reaches a checked-out client between queries', async (t) => {
    // pg emits an ErrorResponse read with no query running as 'error', which a checked-out pool
    // client has no listener for: an uncaught exception here fails the test.
    const pool = new Pool({ connectionString: url, max: 4 });
    pool.on('error', () => undefined);
    let running = true;
    let acked = 0;
    const failed: string[] = [];
    const loop = async (): Promise<void> => {
      while (running) {
        const client = await pool.connect().catch((err: Error & { code?: string }) => void failed.push(err.code ?? err.message));
        if (client === undefined) {
          await sleep(20);
          continue;
        }
        try {
          // Parameters: the extended protocol, whose last chunk (CommandComplete, ReadyForQuery) the FATAL could join.
          await client.query('select $1::int', [acked]);
          client.release();
          acked++;
        } catch (err) {
          client.release(err as Error);
          failed.push((err as Error & { code?: string }).code ?? (err as Error).message);
        }
      }
    };
    const loops = [loop(), loop(), loop(), loop()];
    await eventually(() => acked > 200, 'the loops to run');
    const result = await sessions.drainNode(node, refusal, 10_000);
    const ackedAtDrain = acked;
    await eventually(() => acked > ackedAtDrain + 200, 'the loops to go on over new connections');
    running = false;
    await Promise.all(loops);
    await pool.end();
    t.equal(result.cut, 0, 'every session closed at a boundary');
    t.ok(result.atBoundary >= 4, `the four pooled sessions (and any refused reconnection) closed: ${result.atBoundary}`);
    t.ok(failed.every((code) => code === '57P01'), `the only failures are the drain's 57P01: ${JSON.stringify(failed)}`);
  });

  t.test('dropNode tells an idle client why instead of a bare EOF', async (t) => {
    const client = await connectClient(url);
    t.teardown(() => client.end().catch(() => undefined));
    // A session that could move would (sessions.move); one holding a session lock cannot, and is told why.
    await client.query('SELECT pg_advisory_lock(1)');
    t.equal(sessions.dropNode(node, { reason: 'fenced', code: SqlState.adminShutdown, message: 'terminating connection: n1 is fenced' }), 1);
    await eventually(() => client.errors.length > 0, 'the client to see the error');
    t.equal(client.errors[0]!.code, '57P01');
    t.equal(client.errors[0]!.message, 'terminating connection: n1 is fenced');
    t.match((client.errors[0] as Error & { detail?: string }).detail, /could not move the session: it holds what cannot move: 1 session-level advisory lock/);
  });

  t.test('runPsql still works after all that', async (t) => {
    const r = await runPsql(url, ['-A', '-t', '-c', 'select count(*) from drained']);
    t.equal(r.code, 0, 'psql exits 0', { stderr: r.stderr });
  });
});

/** Stands in for ClientSession in the registry's bookkeeping: closes when told to, or when drained if `closesWhenDrained`. */
class FakeSession implements TrackedSession {
  private static nextId = 1;
  readonly id = FakeSession.nextId++;
  readonly listener = 'readWrite';
  readonly drained: Refusal[] = [];
  readonly terminated: Refusal[] = [];

  constructor(
    private readonly registry: SessionRegistry,
    readonly node: string,
    private readonly closesWhenDrained: boolean,
  ) {
    registry.add(this);
    registry.attach(this, node);
  }

  drain(refusal: Refusal): void {
    this.drained.push(refusal);
    if (this.closesWhenDrained) this.close();
  }

  terminate(refusal: Refusal): void {
    this.terminated.push(refusal);
    this.close();
  }

  close(): void {
    this.registry.remove(this);
  }
}

t.test('SessionRegistry.drainNode bookkeeping', async (t) => {
  t.test('sessions closing over time, one left to the deadline, another node untouched', async (t) => {
    const registry = new SessionRegistry();
    const idle = new FakeSession(registry, 'n1', true);
    const busy = new FakeSession(registry, 'n1', false);
    const stuck = new FakeSession(registry, 'n1', false);
    const elsewhere = new FakeSession(registry, 'n2', false);
    const draining = registry.drainNode('n1', refusal, 300);
    t.equal(idle.drained.length, 1, 'every session is asked to drain');
    t.equal(registry.countOn('n1'), 2, 'the idle one closed at once');
    setTimeout(() => busy.close(), 50);
    t.same(await draining, { atBoundary: 2, cut: 1 });
    t.same(stuck.terminated, [refusal], 'the one still open at the deadline was terminated');
    t.same([elsewhere.drained, elsewhere.terminated], [[], []], 'a session on another node is left alone');
    t.equal(registry.size, 1);
  });

  t.test('two drains of one node, a session attaching meanwhile, and dropNode', async (t) => {
    const registry = new SessionRegistry();
    const first = new FakeSession(registry, 'n1', false);
    const a = registry.drainNode('n1', refusal, 10_000);
    const b = registry.drainNode('n1', refusal, 10_000);
    const late = new FakeSession(registry, 'n1', true);
    t.equal(late.drained.length, 1, 'a session attaching to a draining node is drained (once)');
    t.equal(registry.dropNode('n1', refusal), 1);
    t.same(first.terminated, [refusal]);
    t.same(await Promise.all([a, b]), [
      { atBoundary: 1, cut: 1 },
      { atBoundary: 1, cut: 1 },
    ], 'both drains count the late session as closed and the dropped one as cut');
    const after = new FakeSession(registry, 'n1', true);
    t.same(after.drained, [], 'no drain lingers once finished');
  });
});
