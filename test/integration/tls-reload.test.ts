// Rotating the client-facing certificate without a restart: POST /reload (and SIGHUP, the same
// entry point) gives new clients the new certificate, leaves open sessions alone, refuses broken
// files while keeping the old certificate, and reaches every relay worker.

import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat, type RunningPgfloat } from '../harness/pgfloat';
import { captureLog } from '../harness/log-capture';
import { makeTestCa, type IssuedCertificate } from '../harness/test-ca';
import { connectClient } from '../harness/clients';
import { postOperation, runCli, TEST_TOKEN } from '../harness/cli';
import { openTls } from '../harness/tls-clients';

/** The serial of the certificate a new client is shown, over SSLRequest or direct TLS. */
async function servedSerial(port: number, negotiation: 'direct' | 'sslrequest' = 'sslrequest'): Promise<string> {
  const tls = await openTls(port, negotiation, negotiation === 'direct' ? { ALPNProtocols: ['postgresql'] } : {});
  if (!tls.established) throw new Error(`TLS handshake failed: ${tls.error}`);
  tls.socket.destroy();
  return tls.serial;
}

function install(from: IssuedCertificate, to: IssuedCertificate): void {
  copyFileSync(from.cert, to.cert);
  copyFileSync(from.key, to.key);
}

t.test('certificate reload', async (t) => {
  const cluster = await startCluster(t);
  const ca = await makeTestCa(t);
  const a = await ca.issue('a', 'localhost', ['localhost', '127.0.0.1']);
  const b = await ca.issue('b', 'localhost', ['localhost', '127.0.0.1']);
  const c = await ca.issue('c', 'localhost', ['localhost', '127.0.0.1']);
  // The files pgfloat is configured with; the test copies certificates over them.
  const live = await ca.issue('live', 'localhost', ['localhost', '127.0.0.1']);
  install(a, live);
  const serialOf = (cert: IssuedCertificate): string => new X509Certificate(readFileSync(cert.cert)).serialNumber;
  const [serialA, serialB, serialC] = [serialOf(a), serialOf(b), serialOf(c)];

  const log = captureLog('info');
  const proxy = await startPgfloat(t, cluster, { tls: { cert: live.cert, key: live.key }, admin: { listen: '127.0.0.1:0', token: TEST_TOKEN } }, { log: log.logger });
  t.equal(await servedSerial(proxy.readWritePort), serialA, 'certificate A is served at first');

  t.test('a reload needs the admin token', async (t) => {
    const refused = await postOperation(proxy.adminUrl, '/reload', {}, '');
    t.equal(refused.status, 401);
  });

  t.test('new clients get the new certificate; an open session is untouched', async (t) => {
    const old = await connectClient({ connectionString: proxy.readWriteUrl(), ssl: { rejectUnauthorized: false } });
    t.teardown(() => old.end());
    t.same((await old.query('select 1 as n')).rows, [{ n: 1 }]);
    install(b, live);
    const answer = await postOperation(proxy.adminUrl, '/reload');
    t.equal(answer.status, 200, 'POST /reload answers 200', { json: answer.json });
    t.equal(answer.json.reloaded, true);
    t.match(answer.json.certificate, { serialNumber: serialB });
    t.equal(await servedSerial(proxy.readWritePort), serialB, 'a new client over SSLRequest sees certificate B');
    t.equal(await servedSerial(proxy.readOnlyPort, 'direct'), serialB, 'so does a new direct-TLS client on the other listener');
    t.same((await old.query('select 2 as n')).rows, [{ n: 2 }], 'the session opened under certificate A still answers');
    t.ok(log.lines().some((l) => /TLS files reloaded/.test(l.msg) && l.requestedBy === 'admin API'), 'the reload is logged');
  });

  t.test('broken files are refused and the previous certificate kept', async (t) => {
    const cases: Array<[string, () => void, RegExp]> = [
      ['a mismatched key', () => copyFileSync(a.key, live.key), /key values mismatch/],
      ['a garbage certificate', () => writeFileSync(live.cert, 'not a certificate\n'), /tls\.cert .*live\.crt/],
      ['a missing key', () => rmSync(live.key), /cannot read tls\.key .*live\.key/],
    ];
    for (const [what, breakIt, reason] of cases) {
      install(b, live);
      breakIt();
      const answer = await postOperation(proxy.adminUrl, '/reload');
      t.equal(answer.status, 409, `${what}: POST /reload answers 409`);
      t.equal(answer.json.reloaded, false, what);
      t.match(String(answer.json.message), reason, `${what}: the answer says why`);
      t.equal(await servedSerial(proxy.readWritePort), serialB, `${what}: certificate B is still served`);
    }
    const lines = log.lines().filter((l) => /TLS reload failed/.test(l.msg));
    t.ok(lines.length >= cases.length, 'each failure is logged');
    t.notMatch(log.text(), /BEGIN (EC |)PRIVATE KEY/, 'no key contents in the log');
    install(b, live);
  });

  t.test('pgfloat reload (the CLI) does the same', async (t) => {
    install(c, live);
    const run = await runCli(['reload', '--admin', proxy.adminUrl], { PGFLOAT_ADMIN_TOKEN: TEST_TOKEN });
    t.equal(run.code, 0, 'exit 0', { stderr: run.stderr });
    t.match(run.stdout, /TLS files reloaded/);
    t.equal(await servedSerial(proxy.readWritePort), serialC, 'certificate C is served');
    writeFileSync(live.key, 'garbage\n');
    const failed = await runCli(['reload', '--admin', proxy.adminUrl], { PGFLOAT_ADMIN_TOKEN: TEST_TOKEN });
    t.equal(failed.code, 1, 'a failed reload exits 1');
    t.match(failed.stderr, /TLS reload failed/);
    install(c, live);
  });

  t.test('the SIGHUP entry point reloads as well', async (t) => {
    install(a, live);
    const answer = await proxy.instance.reload('SIGHUP');
    t.equal(answer.reloaded, true);
    t.equal(await servedSerial(proxy.readWritePort), serialA);
  });

  t.test('with two relay workers, every worker reloads', async (t) => {
    install(a, live);
    const workers: RunningPgfloat = await startPgfloat(t, cluster, {
      tls: { cert: live.cert, key: live.key },
      admin: { listen: '127.0.0.1:0', token: TEST_TOKEN },
      proxy: { workers: 2 },
    });
    const before = await Promise.all(Array.from({ length: 6 }, () => servedSerial(workers.readWritePort)));
    t.same(new Set(before), new Set([serialA]), 'every connection sees certificate A');
    install(b, live);
    const answer = await postOperation(workers.adminUrl, '/reload');
    t.equal(answer.status, 200, 'reloaded', { json: answer.json });
    const loops = answer.json.loops as Array<{ loop: string; ok: boolean }>;
    t.same(loops.map((l) => l.loop).sort(), ['control', 'worker 1', 'worker 2'], 'the control process and both workers acknowledged');
    t.ok(loops.every((l) => l.ok));
    // Sessions go to the least loaded worker: held open, several connections spread over both.
    const held = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const tls = await openTls(workers.readWritePort, 'sslrequest');
        if (!tls.established) throw new Error(tls.error);
        return tls;
      }),
    );
    t.teardown(() => held.forEach((h) => h.established && h.socket.destroy()));
    await eventually(() => (workers.instance.relay.snapshot().workers ?? []).every((w) => w.sessions > 0), 'sessions on both workers');
    t.same(new Set(held.map((h) => (h.established ? h.serial : ''))), new Set([serialB]), 'every new connection, on either worker, sees certificate B');
  });

  t.test('sessions are all gone afterwards', async () => {
    await eventually(() => proxy.instance.relay.snapshot().open === 0, 'sessions to close');
  });
});
