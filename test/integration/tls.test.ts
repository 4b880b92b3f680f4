// Client-facing TLS: refused cleanly when not configured, working with a certificate, and the
// CVE-2021-23214 check (no plaintext may follow an SSLRequest before the handshake).

import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { cancelRequest, startupMessage } from '../../src/protocol/startup';
import { SSL_REQUEST_CODE } from '../../src/protocol/codes';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { waitForActiveQuery } from '../harness/waiting';
import { backendKey, connectClient, parseErrorResponse, rawConnect, rejectionOf, runPsql, runTool } from '../harness/clients';

function sslRequest(): Buffer {
  const out = Buffer.alloc(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(SSL_REQUEST_CODE, 4);
  return out;
}

const STARTUP = startupMessage({ user: 'postgres', database: 'postgres' });

t.test('TLS towards clients', async (t) => {
  const cluster = await startCluster(t);
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const made = await runTool('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  t.equal(made.code, 0, 'openssl made a self-signed certificate', { stderr: made.stderr });

  const plain = await startPgfloat(t, cluster);
  const secure = await startPgfloat(t, cluster, { tls: { cert, key } });

  t.test('without tls configured', async (t) => {
    const err = await rejectionOf(connectClient({ connectionString: plain.readWriteUrl(), ssl: { rejectUnauthorized: false } }));
    t.match(err.message, /does not support SSL/i, 'pg with ssl is told the server does not support SSL');

    const client = await connectClient({ connectionString: plain.readWriteUrl(), ssl: false });
    const { rows } = await client.query<{ n: number }>('select 1 as n');
    t.same(rows, [{ n: 1 }], 'pg without ssl works');
    await client.end();

    const required = await runPsql(`${plain.readWriteUrl()}?sslmode=require`, ['-A', '-t', '-c', 'select 1']);
    t.not(required.code, 0, 'psql sslmode=require fails');
    t.match(required.stderr, /does not support SSL/i);
    const preferred = await runPsql(`${plain.readWriteUrl()}?sslmode=prefer`, ['-A', '-t', '-c', 'select 1', '-c', '\\conninfo']);
    t.equal(preferred.code, 0, 'psql sslmode=prefer works', { stderr: preferred.stderr });
    t.match(preferred.stdout, /^1$/m);
    t.notMatch(preferred.stdout, /SSL connection/, 'and is not encrypted');

    const raw = await rawConnect(plain.readWritePort);
    t.teardown(() => raw.socket.destroy());
    raw.socket.write(sslRequest());
    t.equal((await raw.waitForBytes(1)).toString('latin1'), 'N', "a raw SSLRequest gets 'N'");
    raw.socket.write(STARTUP);
    const auth = await raw.waitForMessage('R', { from: 1 });
    t.equal(auth.body.readInt32BE(0), 0, 'the same connection then starts up in plaintext (AuthenticationOk)');
    await raw.waitForMessage('Z', { from: 1 });
  });

  t.test('with a certificate', async (t) => {
    const loose = await connectClient({ connectionString: secure.readWriteUrl(), ssl: { rejectUnauthorized: false } });
    const { rows } = await loose.query<{ r: boolean }>('select pg_is_in_recovery() as r');
    t.same(rows, [{ r: false }], 'pg with ssl (unverified) works and reaches the primary');
    await loose.end();

    const verified = await connectClient({ connectionString: secure.readOnlyUrl(), ssl: { ca: readFileSync(cert, 'utf8') } });
    const ro = await verified.query<{ r: boolean }>('select pg_is_in_recovery() as r');
    t.same(ro.rows, [{ r: true }], 'pg verifying the certificate works on the read-only port');
    await verified.end();

    const required = await runPsql(`${secure.readWriteUrl()}?sslmode=require`, ['-c', '\\conninfo']);
    t.equal(required.code, 0, 'psql sslmode=require works', { stderr: required.stderr });
    t.match(required.stdout, /SSL connection \(protocol: TLS/, '\\conninfo reports SSL');

    const verifyFull = await runPsql(`${secure.readWriteUrl()}?sslmode=verify-full&sslrootcert=${encodeURIComponent(cert)}`, ['-A', '-t', '-c', 'select 42']);
    t.equal(verifyFull.code, 0, 'psql sslmode=verify-full against the certificate works', { stderr: verifyFull.stderr });
    t.equal(verifyFull.stdout.trim(), '42');

    const client = await connectClient({ connectionString: secure.readWriteUrl(), ssl: false });
    t.same((await client.query('select 2 as n')).rows, [{ n: 2 }], 'plaintext clients are still accepted');
    await client.end();

    const raw = await rawConnect(secure.readWritePort);
    t.teardown(() => raw.socket.destroy());
    raw.socket.write(sslRequest());
    t.equal((await raw.waitForBytes(1)).toString('latin1'), 'S', "a raw SSLRequest gets 'S'");
  });

  t.test('plaintext after SSLRequest in the same write is refused (CVE-2021-23214), after the answer as PostgreSQL does', async (t) => {
    const expectRefusal = (data: Buffer, name: string): void => {
      const error = parseErrorResponse(data);
      t.equal(error.code, '08P01', `${name}: protocol_violation`);
      t.match(error.message, /unencrypted data after SSL request/);
      t.equal(error.severity, 'FATAL');
    };
    const withoutTls = await rawConnect(plain.readWritePort);
    withoutTls.socket.write(Buffer.concat([sslRequest(), STARTUP]));
    const { data } = await withoutTls.closed;
    t.equal(data.toString('latin1', 0, 1), 'N', "without tls: 'N' first");
    expectRefusal(data.subarray(1), 'without tls');

    // With TLS the refusal comes once the handshake is done, inside it, and the startup is not taken.
    const withTls = await rawConnect(secure.readWritePort);
    withTls.socket.write(Buffer.concat([sslRequest(), STARTUP]));
    t.equal((await withTls.waitForBytes(1)).toString('latin1'), 'S', "with tls: 'S' first");
    const secured = tlsConnect({ socket: withTls.socket, rejectUnauthorized: false });
    secured.on('error', () => undefined);
    const answer: Buffer[] = [];
    secured.on('data', (d: Buffer) => answer.push(d));
    await once(secured, 'close');
    expectRefusal(Buffer.concat(answer), 'with tls');
  });

  t.test('a CancelRequest sent inside TLS is honoured', async (t) => {
    const client = await connectClient({ connectionString: secure.readWriteUrl(), ssl: { rejectUnauthorized: false }, application_name: 'tls-cancel' });
    t.teardown(() => client.end());
    const { processId, secretKey } = backendKey(client);
    const running = client.query('select pg_sleep(60)');
    running.catch(() => undefined);
    await waitForActiveQuery(cluster.primary, 'tls-cancel', 'select pg_sleep(60)');
    // As libpq 17's encrypted cancel does: SSLRequest, handshake, then the CancelRequest.
    const raw = await rawConnect(secure.readWritePort);
    t.teardown(() => raw.socket.destroy());
    raw.socket.write(sslRequest());
    t.equal((await raw.waitForBytes(1)).toString('latin1'), 'S');
    const secured = tlsConnect({ socket: raw.socket, rejectUnauthorized: false });
    await once(secured, 'secureConnect');
    const answer: Buffer[] = [];
    secured.on('data', (d: Buffer) => answer.push(d));
    secured.on('error', () => undefined);
    secured.write(cancelRequest(processId, secretKey));
    await once(secured, 'close');
    t.equal(Buffer.concat(answer).length, 0, 'nothing is answered on the cancel connection');
    const err = await rejectionOf(running);
    t.equal(err.code, '57014', 'the query was cancelled');
  });

  t.test('sessions are all gone afterwards', async (t) => {
    await eventually(() => plain.instance.relay.snapshot().open === 0 && secure.instance.relay.snapshot().open === 0, 'sessions to close');
    t.equal(secure.instance.relay.snapshot().cancelKeys, 0);
  });
});
