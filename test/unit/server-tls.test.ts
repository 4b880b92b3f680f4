// serverTls as libpq means it: the node's keys over the top-level ones, what each mode checks, and what the tools are given.

import t from 'tap';
import { parseConfigObject } from '../../src/config/load';
import { nodeAddress } from '../../src/config/nodes';
import { certificateFailure, libpqConninfo, libpqEnvironment, pgSslOption, requiresTls, tlsConnectOptions, verification } from '../../src/postgres/server-tls';

t.test("a node's serverTls keys replace the top-level ones, one by one", async (t) => {
  const config = parseConfigObject(
    {
      serverTls: { mode: 'verify-full', ca: '/etc/ca.crt' },
      nodes: [
        { name: 'a', host: 'db-a' },
        { name: 'b', host: 'db-b', serverTls: { mode: 'require', ca: null } },
        { name: 'c', host: 'db-c', serverTls: { cert: '/etc/c.crt', key: '/etc/c.key' } },
      ],
    },
    'test',
    {},
  );
  const [a, b, c] = config.nodes.map((n) => nodeAddress(config, n).tls!);
  t.same(a, { mode: 'verify-full', ca: '/etc/ca.crt', cert: null, key: null });
  t.same(b, { mode: 'require', ca: null, cert: null, key: null });
  t.same(c, { mode: 'verify-full', ca: '/etc/ca.crt', cert: '/etc/c.crt', key: '/etc/c.key' });
});

t.test('what each mode checks', async (t) => {
  const policy = (mode: 'prefer' | 'require' | 'verify-ca' | 'verify-full', ca: string | null = null) => ({ mode, ca, cert: null, key: null });
  t.equal(verification(policy('prefer')), 'none');
  t.equal(verification(policy('require')), 'none');
  t.equal(verification(policy('require', '/ca')), 'chain', 'require with a CA file checks the chain, as libpq does');
  t.equal(verification(policy('verify-ca', '/ca')), 'chain');
  t.equal(verification(policy('verify-full', '/ca')), 'chain-and-name');
  t.notOk(requiresTls('prefer'));
  t.ok(requiresTls('require'));
  const loose = tlsConnectOptions(policy('prefer'), 'db.example');
  t.equal(loose.rejectUnauthorized, false);
  t.equal(loose.servername, 'db.example', 'SNI for a host name');
  t.equal(typeof loose.checkServerIdentity, 'function', 'the name is not checked');
  t.equal(tlsConnectOptions(policy('prefer'), '10.0.0.5').servername, undefined, 'no SNI for an address, as libpq');
  t.equal(pgSslOption({ mode: 'disable', ca: null, cert: null, key: null }, 'h'), false);
  t.equal(pgSslOption({ mode: 'allow', ca: null, cert: null, key: null }, 'h'), false, 'allow tries plaintext first');
});

t.test('the tools get libpq settings of the same meaning', async (t) => {
  const policy = { mode: 'verify-full' as const, ca: '/etc/ca.crt', cert: '/etc/c.crt', key: '/etc/c.key' };
  t.same(libpqEnvironment(policy), { PGSSLMODE: 'verify-full', PGSSLROOTCERT: '/etc/ca.crt', PGSSLCERT: '/etc/c.crt', PGSSLKEY: '/etc/c.key' });
  t.same(libpqConninfo({ ...policy, cert: null, key: null }), { sslmode: 'verify-full', sslrootcert: '/etc/ca.crt' });
});

t.test('a certificate failure names the check', async (t) => {
  const policy = { mode: 'verify-full' as const, ca: '/ca', cert: null, key: null };
  const name = Object.assign(new Error("Hostname/IP does not match certificate's altnames"), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  t.match(certificateFailure(name, policy), /host name check of serverTls.mode verify-full/);
  const chain = Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  t.match(certificateFailure(chain, policy), /certificate chain check/);
  t.equal(certificateFailure(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), policy), undefined, 'a refused connection is no certificate failure');
});
