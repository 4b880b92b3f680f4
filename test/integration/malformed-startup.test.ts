// Raw sockets against the proxy's startup handling: bad lengths, bad versions, garbage, silence,
// and valid startups that arrive byte by byte or pipelined with a query.

import t from 'tap';
import { createHash } from 'node:crypto';
import { startupMessage } from '../../src/protocol/startup';
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE } from '../../src/protocol/codes';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { parseErrorResponse, parseProtocol2Error, queryOnce, rawConnect, sleep, splitMessages, type ParsedError, simpleQuery as query } from '../harness/clients';

const STARTUP = startupMessage({ user: 'postgres', database: 'postgres', application_name: 'malformed-test' });

function int32s(...values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeInt32BE(v, i * 4));
  return out;
}

/** Deterministic pseudo-random bytes, so a failure can be reproduced. */
function garbage(seed: string, length: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; parts.length * 32 < length; i++) parts.push(createHash('sha256').update(`${seed}:${i}`).digest());
  return Buffer.concat(parts).subarray(0, length);
}

t.test('malformed and unusual startups', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { proxy: { startupTimeoutMs: 300 } });
  const patient = await startPgfloat(t, cluster);

  /** Sends `bytes`, waits for the proxy to close, and returns the ErrorResponse it sent first. */
  async function refusalFor(bytes: Buffer, port = proxy.readWritePort): Promise<ParsedError & { raw: Buffer }> {
    const conn = await rawConnect(port);
    conn.socket.write(bytes);
    const { data } = await conn.closed;
    if (data.length === 0 || data[0] !== 0x45) throw new Error(`expected an ErrorResponse, got ${data.length} bytes: ${data.toString('hex').slice(0, 40)}`);
    return { ...parseErrorResponse(data), raw: data };
  }

  /** Sends `bytes` and resolves once the proxy has closed without a word, as PostgreSQL does with what it only logs. */
  async function closedSilentlyFor(bytes: Buffer): Promise<void> {
    const conn = await rawConnect(proxy.readWritePort);
    conn.socket.write(bytes);
    const { data } = await conn.closed;
    if (data.length > 0) throw new Error(`expected a close without a word, got ${data.length} bytes: ${data.toString('hex').slice(0, 40)}`);
  }

  t.test('an oversized startup length is closed without a word before it is read', async (t) => {
    await closedSilentlyFor(Buffer.concat([int32s(20_000, 3 << 16), Buffer.from('user\0postgres\0\0')]));
    t.pass('closed, nothing sent');
  });

  t.test('a startup length below the minimum is closed without a word', async (t) => {
    await closedSilentlyFor(int32s(3));
    await closedSilentlyFor(int32s(-1, 0));
    t.pass('closed, nothing sent, a negative length too');
  });

  t.test('protocol version 2.0 is refused as unsupported, in protocol 2\'s error format', async (t) => {
    const v2 = Buffer.from(STARTUP);
    v2.writeInt32BE(2 << 16, 4);
    const conn = await rawConnect(proxy.readWritePort);
    conn.socket.write(v2);
    t.same(parseProtocol2Error((await conn.closed).data), { severity: 'FATAL', message: 'unsupported frontend protocol 2.0: server supports 3.0 to 3.0' });
    const v4 = Buffer.from(STARTUP);
    v4.writeInt32BE(4 << 16, 4);
    t.equal((await refusalFor(v4)).code, '0A000', 'and 4.0');
  });

  t.test('malformed special requests and parameter lists', async (t) => {
    for (const [name, code] of [['SSLRequest', SSL_REQUEST_CODE], ['GSSENCRequest', GSSENC_REQUEST_CODE]] as const) {
      const conn = await rawConnect(proxy.readWritePort);
      conn.socket.write(int32s(12, code, 0));
      t.equal((await conn.waitForBytes(1)).toString('latin1'), 'N', `${name} with a body: its body is ignored and it is answered`);
      conn.socket.destroy();
    }
    await closedSilentlyFor(int32s(12, CANCEL_REQUEST_CODE, 1));
    t.pass('CancelRequest without a key: closed without a word');
    const unterminated = Buffer.concat([int32s(8 + 13, 3 << 16), Buffer.from('user\0postgres')]);
    const layout = await refusalFor(unterminated);
    t.equal(layout.code, '08P01', 'parameters without the final terminator');
    t.match(layout.message, /invalid startup packet layout/);
    const noUser = startupMessage({ database: 'postgres' });
    const anonymous = await refusalFor(noUser);
    t.equal(anonymous.code, '28000', 'a startup without a user');
    t.match(anonymous.message, /no PostgreSQL user name specified/);
  });

  t.test('garbage gets an ErrorResponse or a close, never a crash', async (t) => {
    const inputs: Array<[string, Buffer]> = [
      ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')],
      ['a TLS ClientHello without SSLRequest', Buffer.from('16030100a5010000a10303', 'hex')],
      ['zeros', Buffer.alloc(64)],
      ['0xff bytes', Buffer.alloc(64, 0xff)],
      ...[1, 2, 3, 4, 5, 6].map((i): [string, Buffer] => [`pseudo-random #${i}`, garbage(`seed-${i}`, 7 + i * 97)]),
      ['a plausible length followed by random bytes', Buffer.concat([int32s(64), garbage('tail', 60)])],
      ['protocol 3.0 with random parameter bytes', Buffer.concat([int32s(64, 3 << 16), garbage('params', 56)])],
      ['protocol 3.0 with random parameter bytes, one short', Buffer.concat([int32s(64, 3 << 16), garbage('short', 55)])],
    ];
    for (const [name, bytes] of inputs) {
      const conn = await rawConnect(proxy.readWritePort);
      conn.socket.write(bytes);
      // A plausible but incomplete packet is ended by the 300 ms startup timeout.
      const { data } = await conn.closed;
      if (data.length === 0) {
        t.pass(`${name}: closed`);
        continue;
      }
      const protocol2 = parseProtocol2Error(data);
      if (protocol2 !== undefined) {
        t.equal(protocol2.severity, 'FATAL', `${name}: a protocol-2 error (${protocol2.message})`);
        continue;
      }
      const error = parseErrorResponse(data);
      t.match(error.code, /^(08P01|0A000|28000|22023)$/, `${name}: ErrorResponse ${error.code} (${error.message})`);
    }
    const { r } = (await queryOnce<{ r: boolean }>(proxy.readWriteUrl(), 'select pg_is_in_recovery() as r'))[0]!;
    t.equal(r, false, 'a normal pg client still works afterwards');
  });

  t.test('a silent client is closed without a word after the startup timeout, as PostgreSQL closes it', async (t) => {
    const silent = await rawConnect(proxy.readWritePort);
    const partial = await rawConnect(proxy.readWritePort);
    partial.socket.write(STARTUP.subarray(0, 10));
    for (const [name, conn] of [['nothing sent', silent], ['half a startup packet', partial]] as const) {
      const { data } = await conn.closed;
      t.equal(data.length, 0, `${name}: closed, nothing sent`);
    }
  });

  t.test('a startup sent one byte at a time works', async (t) => {
    const conn = await rawConnect(patient.readWritePort);
    t.teardown(() => conn.socket.destroy());
    for (let i = 0; i < STARTUP.length; i++) {
      conn.socket.write(STARTUP.subarray(i, i + 1));
      await sleep(2);
    }
    const auth = await conn.waitForMessage('R');
    t.equal(auth.body.readInt32BE(0), 0, 'AuthenticationOk');
    const ready = await conn.waitForMessage('Z');
    t.equal(ready.body.toString('latin1'), 'I', 'ReadyForQuery, idle');
    t.ok(splitMessages(conn.received()).some((m) => m.type === 'K'), 'BackendKeyData on the way');
  });

  t.test('a GSSENCRequest is declined and the startup continues', async (t) => {
    const conn = await rawConnect(patient.readWritePort);
    t.teardown(() => conn.socket.destroy());
    conn.socket.write(int32s(8, GSSENC_REQUEST_CODE));
    t.equal((await conn.waitForBytes(1)).toString('latin1'), 'N');
    conn.socket.write(STARTUP);
    t.equal((await conn.waitForMessage('R', { from: 1 })).body.readInt32BE(0), 0, 'AuthenticationOk');
  });

  t.test('a query pipelined with the startup in one write is answered', async (t) => {
    const conn = await rawConnect(patient.readWritePort);
    t.teardown(() => conn.socket.destroy());
    conn.socket.write(Buffer.concat([STARTUP, query("select 'pipelined' as x")]));
    const complete = await conn.waitForMessage('C');
    t.equal(complete.body.toString('utf8'), 'SELECT 1\0');
    const row = splitMessages(conn.received()).find((m) => m.type === 'D')!;
    t.ok(row, 'a DataRow');
    t.equal(row.body.toString('utf8', 2 + 4), 'pipelined', 'with the value');
    conn.socket.write(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate
    await conn.closed;
  });

  t.test('nothing is left behind', async (t) => {
    await eventually(() => proxy.instance.relay.snapshot().open === 0 && patient.instance.relay.snapshot().open === 0, 'all sessions to be closed');
    t.equal(proxy.instance.relay.snapshot().cancelKeys + patient.instance.relay.snapshot().cancelKeys, 0, 'no cancel keys');
    await eventually(
      async () =>
        (await queryOnce(cluster.primary.connectionString(), `select 1 from pg_stat_activity where application_name = 'malformed-test'`)).length === 0,
      'server backends of the raw sessions to exit',
    );
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    const count = (reason: string): number =>
      Number(new RegExp(`pgfloat_client_refusals_total\\{listener="readWrite",reason="${reason}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    t.ok(count('protocol-violation') > 0, 'protocol violations are counted');
    t.ok(count('unsupported-protocol') >= 2, 'unsupported protocols are counted');
    t.ok(count('startup-timeout') >= 2, 'startup timeouts are counted');
  });
});
