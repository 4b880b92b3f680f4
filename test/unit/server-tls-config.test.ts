// serverTls files are checked when the configuration is loaded: missing, unreadable or unusable ones stop pgfloat (exit 2), naming the key.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, loadConfigFile } from '../../src/config/load';
import { refusedForPlaintext, tlsFailure } from '../../src/postgres/connect';
import { runCli } from '../harness/cli';
import { makeTestCa } from '../harness/test-ca';

const dir = mkdtempSync(join(tmpdir(), 'pgfloat-servertls-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Two nodes, n2 with `node2Tls` as its own serverTls, and `yaml` after them. */
function configFile(name: string, yaml: string, node2Tls = 'null'): string {
  const path = join(dir, name);
  writeFileSync(path, `nodes:\n  - { name: n1, host: 127.0.0.1, port: 5432 }\n  - { name: n2, host: 127.0.0.1, port: 5433, serverTls: ${node2Tls} }\n${yaml}`);
  return path;
}

function loadError(path: string): string {
  try {
    loadConfigFile(path);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return '(loaded)';
}

t.test('serverTls files', async (t) => {
  const ca = await makeTestCa(t);
  const client = await ca.issue('client', 'pgfloat');
  const missing = join(dir, 'missing.crt');
  const garbage = join(dir, 'garbage.pem');
  writeFileSync(garbage, 'not a certificate\n');

  const good = configFile('good.yaml', `serverTls: { mode: verify-full, ca: ${ca.ca}, cert: ${client.cert}, key: ${client.key} }\n`);
  t.equal(loadError(good), '(loaded)', 'readable files load');

  t.match(loadError(configFile('missing.yaml', `serverTls: { mode: verify-ca, ca: ${missing} }\n`)), /^serverTls\.ca: cannot read .*missing\.crt: ENOENT/, 'a missing CA names serverTls.ca');

  const nodeKey = configFile('node.yaml', 'serverTls: { mode: require }\n', `{ cert: ${client.cert}, key: ${garbage} }`);
  t.match(loadError(nodeKey), /^nodes\[1\]\.serverTls\.cert, nodes\[1\]\.serverTls\.key: not usable for TLS/, "a node's unusable key names the node's keys");

  const cli = await runCli(['check-config', '--config', configFile('cli.yaml', `serverTls: { mode: verify-full, ca: ${missing} }\n`)]);
  t.equal(cli.code, 2, 'check-config exits 2');
  t.match(cli.stderr, /serverTls\.ca: cannot read/, 'and names the key');
});

t.test('which connection failures are TLS ones', async (t) => {
  const policy = { mode: 'disable' as const, ca: null, cert: null, key: null };
  const hba = Object.assign(new Error('no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "postgres", no encryption'), { code: '28000' });
  t.ok(refusedForPlaintext(hba), "pg_hba's no encryption is a refusal of plaintext");
  t.notOk(refusedForPlaintext(Object.assign(new Error('password authentication failed for user "x"'), { code: '28P01' })), 'a wrong password is not');
  t.match(tlsFailure(hba, policy), /accepts only encrypted connections, and serverTls\.mode disable/);
  t.match(tlsFailure(Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), { ...policy, mode: 'verify-ca' }), /certificate chain check/);
  t.equal(tlsFailure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), policy), undefined, 'a server that is not there is not a TLS failure');
});
