// Relayed sessions over TLS to servers that take only TLS (serverTls): verified on both legs, a
// plaintext client still encrypted to the server, cancels on the encrypted leg, and libpq's modes.

import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { postOperation, TEST_TOKEN } from '../harness/cli';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { startCluster } from '../harness/cluster';
import { backendKey, connectClient, rejectionOf, runPsql, sendCancel } from '../harness/clients';
import { startPgfloat } from '../harness/pgfloat';
import { makeTestCa } from '../harness/test-ca';
import { waitForActiveQuery } from '../harness/waiting';

const SSL_OF_BACKEND = 'select ssl from pg_stat_ssl where pid = pg_backend_pid()';

async function serverLegEncrypted(url: string, ssl: object | false): Promise<boolean> {
  const client = await connectClient({ connectionString: url, ssl });
  try {
    const { rows } = await client.query<{ ssl: boolean }>(SSL_OF_BACKEND);
    return rows[0]!.ssl;
  } finally {
    await client.end();
  }
}

t.test('serverTls', async (t) => {
  const ca = await makeTestCa(t);
  const serverCert = await ca.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const proxyCert = await ca.issue('proxy', 'pgfloat', ['localhost', '127.0.0.1']);
  const cluster: LocalCluster = await startCluster(t, { tls: { ...serverCert, ca: ca.ca, hostsslOnly: true } });
  const caPem = readFileSync(ca.ca, 'utf8');

  t.test('verify-full on both legs', async (t) => {
    const pgfloat = await startPgfloat(t, cluster, { tls: proxyCert, serverTls: { mode: 'verify-full', ca: ca.ca } });
    // node-postgres checks the host name (127.0.0.1, an IP SAN) when given a CA.
    t.equal(await serverLegEncrypted(pgfloat.readWriteUrl(), { ca: caPem }), true, 'a read-write client verifying pgfloat is relayed over TLS');
    t.equal(await serverLegEncrypted(pgfloat.readOnlyUrl(), { ca: caPem }), true, 'a read-only client too');
    t.equal(await serverLegEncrypted(pgfloat.readWriteUrl(), false), true, 'a plaintext client still gets a TLS server leg');

    const psql = await runPsql(`${pgfloat.readWriteUrl()}?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.ca)}`, ['-A', '-t', '-c', SSL_OF_BACKEND, '-c', 'create table if not exists tls_writes(n int)', '-c', 'insert into tls_writes values (1)']);
    t.equal(psql.code, 0, 'psql with verify-full writes through pgfloat', { stderr: psql.stderr });
    t.match(psql.stdout, /^t$/m);

    const client = await connectClient({ connectionString: pgfloat.readWriteUrl(), ssl: { ca: caPem }, application_name: 'tls-cancel' });
    t.teardown(() => client.end());
    const running = client.query('select pg_sleep(60)');
    const cancelled = rejectionOf(running);
    await waitForActiveQuery(cluster.primary, 'tls-cancel', 'select pg_sleep(60)');
    const { processId, secretKey } = backendKey(client);
    await sendCancel(pgfloat.readWritePort, processId, secretKey);
    t.equal((await cancelled).code, '57014', 'a cancel reaches the backend over the encrypted leg');
  });

  t.test('a reload reads the serverTls files again, and keeps them when the new ones are broken', async (t) => {
    const caFile = join(mkdtempSync(join(tmpdir(), 'pgfloat-server-ca-')), 'ca.crt');
    t.teardown(() => rmSync(dirname(caFile), { recursive: true, force: true }));
    copyFileSync(ca.ca, caFile);
    const pgfloat = await startPgfloat(t, cluster, { admin: { listen: '127.0.0.1:0', token: TEST_TOKEN }, serverTls: { mode: 'verify-full', ca: caFile } });
    t.equal(await serverLegEncrypted(pgfloat.readWriteUrl(), false), true, 'verified against the CA file');
    writeFileSync(caFile, 'not a certificate\n');
    const broken = await postOperation(pgfloat.adminUrl, '/reload');
    t.equal(broken.status, 409, 'a CA file that is no certificate is refused');
    t.match(JSON.stringify(broken.json), /serverTls files .*ca\.crt are not usable for TLS/, 'naming the file');
    t.equal(await serverLegEncrypted(pgfloat.readWriteUrl(), false), true, 'the CA read before stays in use');
    const other = await makeTestCa(t, 'another CA');
    writeFileSync(caFile, Buffer.concat([readFileSync(other.ca), readFileSync(ca.ca)]));
    const rotated = await postOperation(pgfloat.adminUrl, '/reload');
    t.equal(rotated.status, 200, 'a bundle of the next CA and the current one is taken', { json: rotated.json });
    t.equal(await serverLegEncrypted(pgfloat.readWriteUrl(), false), true, 'and sessions still verify the servers');
    writeFileSync(caFile, readFileSync(other.ca));
    t.equal((await postOperation(pgfloat.adminUrl, '/reload')).status, 200, 'the next CA alone loads too');
    // The monitor keeps its open connections, as sessions do; new connections verify against the new CA.
    const refused = await rejectionOf(connectClient({ connectionString: pgfloat.readOnlyUrl(), ssl: false }));
    t.match(refused.message, /certificate chain check of serverTls.mode verify-full/, 'and from then on servers signed by the old CA are refused, saying why');
  });

  t.test('prefer (the default) encrypts to a server that offers TLS', async (t) => {
    const pgfloat = await startPgfloat(t, cluster);
    t.equal(await serverLegEncrypted(pgfloat.readWriteUrl(), false), true);
  });

  t.test('disable cannot reach servers that take only TLS', async (t) => {
    const pgfloat = await startPgfloat(t, cluster, { serverTls: { mode: 'disable' } });
    const refused = await rejectionOf(connectClient({ connectionString: pgfloat.readOnlyUrl(), ssl: false }));
    t.equal(refused.code, '57P03', 'a client is refused by pgfloat, which found no usable server');
    t.match(JSON.stringify(pgfloat.instance.status().nodes), /no encryption/, "and /status shows the servers' reason");
  });
});

t.test('serverTls against servers without TLS', async (t) => {
  const cluster = await startCluster(t);
  const preferring = await startPgfloat(t, cluster);
  for (let i = 0; i < 3; i++) t.equal(await serverLegEncrypted(preferring.readWriteUrl(), false), false, `prefer falls back to plaintext (connection ${i + 1})`);
  const requiring = await startPgfloat(t, cluster, { serverTls: { mode: 'require' } });
  // pgfloat's heartbeats follow serverTls too: under require a server without TLS is unusable, so routing refuses before the relay would try it.
  const err = await rejectionOf(connectClient({ connectionString: requiring.readOnlyUrl(), ssl: false }));
  t.match(err.message, /no healthy standby/, 'require refuses servers without TLS');
  t.match(requiring.instance.status().nodes[1]?.tls.error, /does not accept TLS \(ssl = off\), and serverTls\.mode require requires it/, 'and /status says why');
});
