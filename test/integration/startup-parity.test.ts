// The startup phase side by side: the same bytes sent to PostgreSQL 15 directly and to pgfloat in
// front of it must end the same way for the client (answers, messages, silence), every case.

import t from 'tap';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { Client } from 'pg';
import { CANCEL_REQUEST_CODE, SSL_REQUEST_CODE } from '../../src/protocol/codes';
import { startupMessage } from '../../src/protocol/startup';
import { startCluster } from '../harness/cluster';
import { captureLog } from '../harness/log-capture';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { parseErrorResponse, queryOnce, rawConnect } from '../harness/clients';
import { gssencRequest, int32s, oneByteAtATime, packet, protocolCode, sslRequest } from '../harness/client-bytes';
import { negotiations, readReply } from '../harness/fuzz-connection';

/** PostgreSQL's authentication_timeout has a one-second floor; pgfloat's startup timeout is set to match. */
const STARTUP_TIMEOUT_MS = 1000;
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);
const APPLICATION = 'startup-parity';
/** Both sides close every case well within this (at worst after the one-second timeouts): a connection still open after it is a failure, not a wait. */
const HANG_GUARD_MS = 15_000;

/** What a client does: send bytes, wait until `answers` one-byte answers (or anything) arrived, or half-close. */
type Step = Buffer | { awaitBytes: number } | 'end';

interface Case {
  name: string;
  steps: readonly Step[];
  /**
   * PostgreSQL answers a GSSENCRequest over TCP with 'G' when built with GSSAPI, as Debian's is;
   * pgfloat has no GSSAPI encryption and answers as a server without it, which PostgreSQL also
   * does on a Unix-domain socket. Those cases are compared with PostgreSQL reached that way.
   */
  viaUnixSocket?: boolean;
}

const startup = (parameters: Record<string, string>, minor = 0): Buffer =>
  startupMessage({ ...parameters, application_name: APPLICATION }, minor);
const USER = { user: 'postgres', database: 'postgres' };
const withVersion = (code: number): Buffer => {
  const out = startup(USER);
  out.writeInt32BE(code | 0, 4);
  return out;
};
const noTerminator = Buffer.concat([int32s(8 + 13, protocolCode(3, 0)), Buffer.from('user\0postgres')]);
const paddedToLength = (total: number): Buffer => {
  const fixed = 8 + 'user\0postgres\0options\0'.length + 2;
  return packet(protocolCode(3, 0), Buffer.from(`user\0postgres\0options\0${' '.repeat(total - fixed)}\0\0`));
};

const CASES: Case[] = [
  { name: 'EOF before any byte', steps: ['end'] },
  { name: 'part of the length word, then EOF', steps: [Buffer.from([0, 0]), 'end'] },
  { name: 'a length below 8', steps: [int32s(7, protocolCode(3, 0))] },
  { name: 'a negative length', steps: [int32s(-1, 0)] },
  { name: 'a length over MAX_STARTUP_PACKET_LENGTH + 4', steps: [int32s(10_005, protocolCode(3, 0))] },
  { name: 'a startup of exactly MAX_STARTUP_PACKET_LENGTH + 4 bytes', steps: [paddedToLength(10_004)] },
  { name: 'a Terminate before the startup packet', steps: [TERMINATE] },
  { name: 'part of a startup packet, then EOF', steps: [startup(USER).subarray(0, 10), 'end'] },
  { name: 'nothing at all until the timeout', steps: [] },
  { name: 'half a startup packet until the timeout', steps: [startup(USER).subarray(0, 10)] },
  { name: 'protocol 2.0', steps: [withVersion(protocolCode(2, 0))] },
  { name: 'protocol 1.0', steps: [withVersion(protocolCode(1, 0))] },
  { name: 'protocol 0.5', steps: [withVersion(protocolCode(0, 5))] },
  { name: 'protocol 0.0', steps: [withVersion(0)] },
  { name: 'protocol 4.1', steps: [withVersion(protocolCode(4, 1))] },
  { name: 'protocol 3.2 with _pq_. options: NegotiateProtocolVersion, then the session', steps: [startup({ ...USER, '_pq_.one': 'x', '_pq_.two': 'y' }, 2)] },
  { name: 'protocol 3.1 without a user: NegotiateProtocolVersion, then the refusal', steps: [startup({ database: 'postgres' }, 1)] },
  { name: 'protocol 3.0 with a _pq_. option and no user', steps: [startup({ '_pq_.one': 'x' })] },
  { name: 'no user', steps: [startup({ database: 'postgres' })] },
  { name: 'an empty user', steps: [startup({ user: '' })] },
  { name: 'no database: the user\'s', steps: [startup({ user: 'postgres' })] },
  { name: 'an empty database: the user\'s', steps: [startup({ user: 'postgres', database: '' })] },
  { name: 'no terminator after the parameters', steps: [noTerminator] },
  { name: 'protocol 3.1, no terminator', steps: [Buffer.concat([int32s(8 + 13, protocolCode(3, 1)), Buffer.from('user\0postgres')])] },
  { name: 'a parameter without a value', steps: [Buffer.concat([int32s(8 + 6, protocolCode(3, 0)), Buffer.from('user\0\0')])] },
  { name: 'bytes after the terminator', steps: [Buffer.concat([int32s(8 + 16, protocolCode(3, 0)), Buffer.from('user\0postgres\0\0\0\0')])] },
  { name: 'replication=bogus', steps: [startup({ ...USER, replication: 'bogus' })] },
  { name: 'replication=bogus and no user', steps: [startup({ replication: 'bogus' })] },
  { name: 'replication=of (a prefix of off)', steps: [startup({ ...USER, replication: 'of' })] },
  { name: 'replication=true: a physical walsender', steps: [startup({ user: 'postgres', replication: 'true' })] },
  { name: 'replication=database', steps: [startup({ ...USER, replication: 'database' })] },
  { name: 'a startup one byte per write', steps: oneByteAtATime(startup(USER)) },
  { name: 'a layout error one byte per write', steps: oneByteAtATime(noTerminator) },
  { name: 'SSLRequest, then the startup', steps: [sslRequest(), { awaitBytes: 1 }, startup(USER)] },
  { name: 'SSLRequest with a body', steps: [packet(SSL_REQUEST_CODE, Buffer.alloc(4)), { awaitBytes: 1 }, startup(USER)] },
  { name: 'SSLRequest, then EOF', steps: [sslRequest(), { awaitBytes: 1 }, 'end'] },
  { name: 'SSLRequest, then nothing until the timeout', steps: [sslRequest(), { awaitBytes: 1 }] },
  { name: 'SSLRequest twice', steps: [sslRequest(), { awaitBytes: 1 }, sslRequest()] },
  { name: 'a startup pipelined behind SSLRequest', steps: [Buffer.concat([sslRequest(), startup(USER)])] },
  { name: 'GSSENCRequest, then the startup', steps: [gssencRequest(), { awaitBytes: 1 }, startup(USER)], viaUnixSocket: true },
  { name: 'GSSENCRequest twice', steps: [gssencRequest(), { awaitBytes: 1 }, gssencRequest()], viaUnixSocket: true },
  { name: 'SSLRequest after GSSENCRequest', steps: [gssencRequest(), { awaitBytes: 1 }, sslRequest(), { awaitBytes: 2 }, startup(USER)], viaUnixSocket: true },
  { name: 'GSSENCRequest after SSLRequest', steps: [sslRequest(), { awaitBytes: 1 }, gssencRequest(), { awaitBytes: 2 }, startup(USER)], viaUnixSocket: true },
  { name: 'GSSENCRequest, SSLRequest, GSSENCRequest', steps: [gssencRequest(), { awaitBytes: 1 }, sslRequest(), { awaitBytes: 2 }, gssencRequest()], viaUnixSocket: true },
  { name: 'SSLRequest, GSSENCRequest, SSLRequest', steps: [sslRequest(), { awaitBytes: 1 }, gssencRequest(), { awaitBytes: 2 }, sslRequest()], viaUnixSocket: true },
  { name: 'a startup pipelined behind GSSENCRequest', steps: [Buffer.concat([gssencRequest(), startup(USER)])], viaUnixSocket: true },
  { name: 'a CancelRequest for no session', steps: [int32s(16, CANCEL_REQUEST_CODE, 1, 2)] },
  { name: 'a CancelRequest without a key', steps: [int32s(12, CANCEL_REQUEST_CODE, 1)] },
  { name: 'a CancelRequest of 8 bytes', steps: [int32s(8, CANCEL_REQUEST_CODE)] },
];

/** What the client saw, with what legitimately differs left out: an ErrorResponse's file, line and routine; message bodies other than ErrorResponse, NegotiateProtocolVersion and Authentication. */
interface Observation {
  answers: string;
  messages: string[];
  /** Set when the connection was still open at the hang guard. */
  hung?: true;
}

function observed(data: Buffer, steps: readonly Step[]): Observation {
  const reply = readReply(data, negotiations(Buffer.concat(steps.filter((s): s is Buffer => Buffer.isBuffer(s)))));
  if (reply === undefined) return { answers: '?', messages: [`unreadable: ${data.toString('hex')}`] };
  if (reply.protocol2 !== undefined) return { answers: reply.answers.toString('latin1'), messages: [`protocol-2 error ${reply.protocol2.severity}: ${reply.protocol2.message}`] };
  const messages = reply.messages.map((m) => {
    if (m.type === 'E') {
      const { F: _file, L: _line, R: _routine, ...fields } = parseErrorResponse(m.body).fields;
      return `E ${JSON.stringify(fields)}`;
    }
    return m.type === 'v' || m.type === 'R' ? `${m.type} ${m.body.toString('hex')}` : m.type;
  });
  return { answers: reply.answers.toString('latin1'), messages };
}

function write(socket: Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => socket.write(bytes, () => resolve()));
}

/** Plays `steps` against `target`, ends a session that got through as a client would, and waits for the connection to close. */
async function play(target: number | { path: string }, steps: readonly Step[]): Promise<Observation> {
  const conn = await rawConnect(target);
  conn.socket.on('error', () => undefined);
  const maxAnswers = negotiations(Buffer.concat(steps.filter((s): s is Buffer => Buffer.isBuffer(s))));
  let terminated = false;
  conn.socket.on('data', () => {
    const reply = readReply(conn.received(), maxAnswers);
    if (!terminated && reply?.messages.some((m) => m.type === 'Z')) {
      terminated = true;
      conn.socket.end(TERMINATE);
    }
  });
  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    conn.socket.destroy();
  }, HANG_GUARD_MS);
  for (const step of steps) {
    if (conn.socket.destroyed) break;
    if (step === 'end') conn.socket.end();
    else if (Buffer.isBuffer(step)) await write(conn.socket, step);
    else await conn.waitForBytes(step.awaitBytes).catch(() => undefined);
  }
  const { data } = await conn.closed;
  clearTimeout(guard);
  return { ...observed(data, steps), ...(hung ? { hung: true as const } : {}) };
}

t.test('the startup phase through pgfloat ends as it does with PostgreSQL 15 directly', async (t) => {
  const cluster = await startCluster(t, { extraConf: { authentication_timeout: `${STARTUP_TIMEOUT_MS / 1000}s` } });
  const log = captureLog('info');
  // One relay loop, in this process: its log lines are read below.
  const proxy = await startPgfloat(t, cluster, { proxy: { workers: 1, startupTimeoutMs: STARTUP_TIMEOUT_MS } }, { log: log.logger });
  const primary = cluster.nodes[0]!;
  const unixSocket = { path: join(cluster.baseDir, 'sock', `.s.PGSQL.${primary.port}`) };

  // Each pair at once: the cases that wait for a timeout then take one second, not two.
  await Promise.all(CASES.map(async ({ name, steps, viaUnixSocket }) => {
    const [postgres, pgfloat] = await Promise.all([play(viaUnixSocket ? unixSocket : primary.port, steps), play(proxy.readWritePort, steps)]);
    t.same(pgfloat, postgres, `${name}: ${JSON.stringify(postgres)}`);
  }));

  t.test('node-postgres ending a client in the tick it connects: quiet either way', async (t) => {
    // node-postgres writes its Terminate on the socket still connecting, so it goes out before the
    // startup packet. PostgreSQL closes without a word: the client sees its 'end' and nothing else
    // (neither promise settles in pg 8.23), no error an application would have to handle.
    const outcome = async (port: number): Promise<string[]> => {
      const events: string[] = [];
      const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      client.on('error', (err) => events.push(`error event: ${err.message}`));
      const ended = new Promise<void>((resolve) => client.once('end', resolve));
      client.connect().then(() => events.push('connected'), (err: Error) => events.push(`connect failed: ${err.message}`));
      client.end().then(() => events.push('end resolved'), (err: Error) => events.push(`end failed: ${err.message}`));
      await ended;
      // Whatever settles because of the close has settled once the pending callbacks have run.
      await new Promise((resolve) => setImmediate(resolve));
      return events;
    };
    const direct = await outcome(primary.port);
    t.same(await outcome(proxy.readWritePort), direct, `as directly: ${JSON.stringify(direct)}`);
    t.notMatch(direct.join(), /invalid length|error event/, 'no error reaches the application directly, so none may through pgfloat');
  });

  t.test('the silent closes are logged and counted by pgfloat', async (t) => {
    const said = log.lines().map((line) => line.msg);
    for (const expected of [
      'closed client without a word: invalid length of startup packet: 1476395008 (a Terminate message: the client ended before sending its startup packet)',
      'closed client without a word: invalid length of startup packet: 10005',
      'closed client without a word: invalid length of CancelRequest: 12',
      `closed client without a word: timeout: no complete startup packet within ${STARTUP_TIMEOUT_MS} ms`,
      'client closed: incomplete startup packet',
    ]) {
      t.ok(said.includes(expected), `logged: ${expected}`);
    }
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    const count = (reason: string): number =>
      Number(new RegExp(`pgfloat_client_refusals_total\\{listener="readWrite",reason="${reason}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    t.ok(count('startup-timeout') >= 3, 'the three timeouts');
    t.ok(count('protocol-violation') >= 8, 'bad lengths, malformed cancels, layout errors');
  });

  t.test('nothing is left behind', async () => {
    await eventually(() => proxy.instance.relay.snapshot().open === 0, 'pgfloat\'s sessions to close');
    await eventually(
      async () => (await queryOnce(primary.connectionString(), `select 1 from pg_stat_activity where application_name = '${APPLICATION}'`)).length === 0,
      'the server backends of the sessions to exit',
    );
  });
});
