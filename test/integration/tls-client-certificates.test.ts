// Mutual TLS toward clients: tls.clientCertificates require refuses a client without a valid
// certificate at the TLS layer (logged with the reason) and takes one signed by tls.ca; verify
// takes clients without one but refuses a certificate that does not verify.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { captureLog } from '../harness/log-capture';
import { makeTestCa } from '../harness/test-ca';
import { connectClient, rejectionOf, runPsql } from '../harness/clients';
import { openTls, startupAndSelect } from '../harness/tls-clients';

t.test('client certificates', async (t) => {
  const cluster = await startCluster(t);
  const trusted = await makeTestCa(t, 'trusted client CA');
  const stranger = await makeTestCa(t, 'some other CA');
  const server = await trusted.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const alice = await trusted.issue('alice', 'alice');
  const mallory = await stranger.issue('mallory', 'mallory');
  const pem = (file: string): Buffer => readFileSync(file);

  const log = captureLog('debug');
  const tls = { cert: server.cert, key: server.key, ca: trusted.ca };
  const requiring = await startPgfloat(t, cluster, { tls: { ...tls, clientCertificates: 'require' } }, { log: log.logger });
  const verifying = await startPgfloat(t, cluster, { tls: { ...tls, clientCertificates: 'verify' } });

  t.test('require: a client without a certificate fails its handshake, and pgfloat says why', async (t) => {
    const err = await rejectionOf(connectClient({ connectionString: requiring.readWriteUrl(), ssl: { rejectUnauthorized: false } }));
    t.ok(err, `pg fails: ${err.message}`);
    const raw = await openTls(requiring.readWritePort, 'sslrequest');
    if (raw.established) {
      // TLS 1.3: the client's side of the handshake ends before the server has judged its (missing) certificate.
      const closed = new Promise<boolean>((resolve) => raw.socket.once('close', () => resolve(true)));
      raw.socket.on('data', () => t.fail('nothing may be answered'));
      t.ok(await closed, 'the connection is closed');
    } else t.match(raw.error, /certificate required|alert|closed|socket hang up|ECONNRESET/i, `the handshake fails: ${raw.error}`);
    await eventually(() => log.lines().some((l) => /TLS handshake failed: .*(did not return a certificate|certificate required)|client certificate required/i.test(l.msg)), 'the reason to be logged');
    t.pass('the refusal is logged with its reason');
  });

  t.test('require: a certificate signed by tls.ca is accepted, and its CN is in the session log', async (t) => {
    const client = await connectClient({ connectionString: requiring.readWriteUrl(), ssl: { ca: pem(trusted.ca), cert: pem(alice.cert), key: pem(alice.key), servername: 'localhost' } });
    t.teardown(() => client.end());
    t.same((await client.query('select 7 as n')).rows, [{ n: 7 }], 'pg with ssl { cert, key, ca } works');
    await eventually(() => log.lines().some((l) => l.clientCn === 'alice' && /session established/.test(l.msg)), 'the session to be logged with clientCn');
    t.pass('the session log carries clientCn alice');

    const direct = await openTls(requiring.readOnlyPort, 'direct', { ALPNProtocols: ['postgresql'], cert: pem(alice.cert), key: pem(alice.key) });
    if (!direct.established) return t.fail(`direct TLS with a client certificate failed: ${direct.error}`);
    t.teardown(() => direct.socket.destroy());
    t.equal(await startupAndSelect(direct.socket, 8), '8', 'direct TLS with the certificate works too');
  });

  t.test('require: a certificate from another CA is refused, and logged', async (t) => {
    const err = await rejectionOf(connectClient({ connectionString: requiring.readWriteUrl(), ssl: { rejectUnauthorized: false, cert: pem(mallory.cert), key: pem(mallory.key) } }));
    t.ok(err, `pg fails: ${err.message}`);
    await eventually(() => log.lines().some((l) => /client certificate \(CN mallory\) refused/.test(l.msg)), 'the refusal to be logged');
    t.pass('logged with the CN and the reason');
  });

  t.test('psql (libpq) with sslcert/sslkey', async (t) => {
    const params = `sslmode=verify-full&sslrootcert=${encodeURIComponent(trusted.ca)}&sslcert=${encodeURIComponent(alice.cert)}&sslkey=${encodeURIComponent(alice.key)}`;
    const ok = await runPsql(`postgres://postgres@localhost:${requiring.readWritePort}/postgres?${params}`, ['-A', '-t', '-c', 'select 9']);
    t.equal(ok.code, 0, 'psql with the client certificate works', { stderr: ok.stderr });
    t.equal(ok.stdout.trim(), '9');
    const without = await runPsql(`postgres://postgres@localhost:${requiring.readWritePort}/postgres?sslmode=require&sslcert=/nonexistent&sslkey=/nonexistent`, ['-A', '-t', '-c', 'select 1']);
    t.not(without.code, 0, 'psql without one fails');
  });

  t.test('verify: no certificate is fine, a valid one is fine, one from another CA is refused', async (t) => {
    const none = await connectClient({ connectionString: verifying.readWriteUrl(), ssl: { rejectUnauthorized: false } });
    t.same((await none.query('select 1 as n')).rows, [{ n: 1 }], 'no client certificate');
    await none.end();
    const valid = await connectClient({ connectionString: verifying.readWriteUrl(), ssl: { rejectUnauthorized: false, cert: pem(alice.cert), key: pem(alice.key) } });
    t.same((await valid.query('select 2 as n')).rows, [{ n: 2 }], 'a certificate signed by tls.ca');
    await valid.end();
    await rejectionOf(connectClient({ connectionString: verifying.readWriteUrl(), ssl: { rejectUnauthorized: false, cert: pem(mallory.cert), key: pem(mallory.key) } }));
    t.pass('a certificate from another CA is refused');
  });

  t.test('sessions are all gone afterwards', async () => {
    await eventually(() => requiring.instance.relay.snapshot().open === 0 && verifying.instance.relay.snapshot().open === 0, 'sessions to close');
  });
});
