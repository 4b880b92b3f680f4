// PostgreSQL 17's direct TLS (sslnegotiation=direct) and its ALPN rules, on both ways into TLS:
// a direct-TLS client must offer ALPN "postgresql"; any client offering ALPN without it fails the
// handshake; without tls configured the bytes are refused as a bad startup packet.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { captureLog } from '../harness/log-capture';
import { makeTestCa } from '../harness/test-ca';
import { rawConnect } from '../harness/clients';
import { converse, openTls, sslRequest, startupAndSelect } from '../harness/tls-clients';

t.test('direct TLS and ALPN', async (t) => {
  const cluster = await startCluster(t);
  const ca = await makeTestCa(t);
  const server = await ca.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const log = captureLog('info');
  const secure = await startPgfloat(t, cluster, { tls: { cert: server.cert, key: server.key } }, { log: log.logger });
  const plain = await startPgfloat(t, cluster);

  t.test('a direct-TLS client offering ALPN postgresql gets a session', async (t) => {
    const tls = await openTls(secure.readWritePort, 'direct', { ALPNProtocols: ['postgresql'], ca: readFileSync(ca.ca), servername: 'localhost', rejectUnauthorized: true });
    if (!tls.established) return t.fail(`handshake failed: ${tls.error}`);
    t.teardown(() => tls.socket.destroy());
    t.equal(tls.alpn, 'postgresql', "the server selects ALPN 'postgresql'");
    t.equal(await startupAndSelect(tls.socket, 17), '17', 'the StartupMessage inside TLS logs in, and a query is answered');
  });

  t.test('also with several ALPN protocols offered, postgresql among them', async (t) => {
    const tls = await openTls(secure.readOnlyPort, 'direct', { ALPNProtocols: ['http/1.1', 'postgresql'] });
    if (!tls.established) return t.fail(`handshake failed: ${tls.error}`);
    t.teardown(() => tls.socket.destroy());
    t.equal(tls.alpn, 'postgresql');
    t.equal(await startupAndSelect(tls.socket, 18), '18');
  });

  t.test('a direct-TLS client offering other ALPN protocols fails the handshake (no_application_protocol)', async (t) => {
    const tls = await openTls(secure.readWritePort, 'direct', { ALPNProtocols: ['http/1.1'] });
    t.equal(tls.established, false, 'no TLS connection');
    if (!tls.established) t.match(tls.error, /no application protocol/i, 'the client got the no_application_protocol alert');
  });

  t.test('a direct-TLS client offering no ALPN is closed after the handshake, without a word', async (t) => {
    const tls = await openTls(secure.readWritePort, 'direct');
    // The handshake itself may or may not complete on the client's side before the close arrives.
    if (tls.established) {
      const conversation = converse(tls.socket);
      tls.socket.write(sslRequest());
      const data = await conversation.closed;
      t.equal(data.length, 0, 'nothing is sent back over TLS, not even an ErrorResponse');
    } else t.pass(`the connection ended: ${tls.error}`);
    await eventually(() => log.lines().some((l) => /without ALPN protocol negotiation extension/.test(l.msg)), 'the refusal to be logged');
    t.pass('pgfloat logged the reason as PostgreSQL 17 words it');
  });

  t.test('on the SSLRequest path: no ALPN is fine, ALPN without postgresql fails the handshake, postgresql is selected', async (t) => {
    const none = await openTls(secure.readWritePort, 'sslrequest');
    if (!none.established) return t.fail(`handshake failed: ${none.error}`);
    t.teardown(() => none.socket.destroy());
    t.equal(none.alpn, false, 'no ALPN selected when none was offered');
    t.equal(await startupAndSelect(none.socket, 19), '19');

    const wrong = await openTls(secure.readWritePort, 'sslrequest', { ALPNProtocols: ['h2'] });
    t.equal(wrong.established, false);
    if (!wrong.established) t.match(wrong.error, /no application protocol/i);

    const right = await openTls(secure.readWritePort, 'sslrequest', { ALPNProtocols: ['postgresql'] });
    if (!right.established) return t.fail(`handshake failed: ${right.error}`);
    t.teardown(() => right.socket.destroy());
    t.equal(right.alpn, 'postgresql');
  });

  t.test("an SSLRequest inside direct TLS gets 'N', and the session goes on", async (t) => {
    const tls = await openTls(secure.readWritePort, 'direct', { ALPNProtocols: ['postgresql'] });
    if (!tls.established) return t.fail(`handshake failed: ${tls.error}`);
    t.teardown(() => tls.socket.destroy());
    const answer = new Promise<Buffer>((resolve) => tls.socket.once('data', resolve));
    tls.socket.write(sslRequest());
    t.equal((await answer).toString('latin1'), 'N', 'as PostgreSQL 17 answers an SSL request on a connection already encrypted');
    t.equal(await startupAndSelect(tls.socket, 20), '20');
  });

  t.test('without tls configured, a direct-TLS ClientHello is closed without a word', async (t) => {
    const raw = await rawConnect(plain.readWritePort);
    // A TLS 1.2 record header of a ClientHello: read as a startup length it is hundreds of megabytes.
    raw.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]));
    const { data } = await raw.closed;
    t.equal(data.length, 0, 'closed, nothing written');

    const tls = await openTls(plain.readWritePort, 'direct', { ALPNProtocols: ['postgresql'] });
    t.equal(tls.established, false, 'a real direct-TLS client fails');
  });

  t.test('sessions are all gone afterwards', async () => {
    await eventually(() => secure.instance.relay.snapshot().open === 0 && plain.instance.relay.snapshot().open === 0, 'sessions to close');
  });
});
