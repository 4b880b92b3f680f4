// Secrets stay secret: no password or admin token in logs (at trace), /status, /metrics, /operations or CLI output, whatever happens.

import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseConfigObject } from '../../src/config/load';
import { createLogger, silentLogger } from '../../src/log';
import { Pgfloat } from '../../src/runtime/pgfloat';
import { CLI_MAIN, operationResult, runCli } from '../harness/cli';
import { connectClient, queryOnce, rejectionOf } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat, stateDirFor } from '../harness/pgfloat';
import { freePort } from '../../src/sandbox/ports';
import { pickPorts } from '../harness/pgfloat-process';
import { makeTestCa } from '../harness/test-ca';
import { unprivilegedUser } from '../../src/system/os-user';

const MONITOR_PASSWORD = 'monitorPw-3b9f27c1';
const REPLICATION_PASSWORD = 'replicationPw-8e41d2a6';
const ADMIN_TOKEN = 'adminToken-5d1c0e9a7b26f4';
const SCRAM_PASSWORD = 'scramPw-c07a55e3';
const MD5_PASSWORD = 'md5Pw-41c6b0f9';
const md5Of = (password: string, user: string): string => createHash('md5').update(password + user).digest('hex');
/** Each secret, and for md5 roles the stored hash, which is as good as the password to an md5 login. */
const SECRETS: Record<string, string> = {
  'monitor password': MONITOR_PASSWORD,
  'replication password': REPLICATION_PASSWORD,
  'admin token': ADMIN_TOKEN,
  'SCRAM client password': SCRAM_PASSWORD,
  'md5 client password': MD5_PASSWORD,
  'md5 hash of the client password': md5Of(MD5_PASSWORD, 'app_md5'),
  'md5 hash of the monitor password': md5Of(MONITOR_PASSWORD, 'postgres'),
};

/**
 * What a SCRAM verifier holds, and the ClientKey pgfloat derives from a client's proof to move its
 * session (sessions.move): each as good as a password to somebody, so each must appear nowhere.
 */
function scramSecrets(verifier: string, password: string): Record<string, string> {
  const [, iterations, salt, storedKey, serverKey] = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier)!;
  const salted = pbkdf2Sync(password, Buffer.from(salt!, 'base64'), Number(iterations), 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  return {
    'SCRAM verifier': verifier,
    'SCRAM StoredKey': storedKey!,
    'SCRAM ServerKey': serverKey!,
    'SCRAM ClientKey (base64)': clientKey.toString('base64'),
    'SCRAM ClientKey (hex)': clientKey.toString('hex'),
    'SCRAM SaltedPassword (hex)': salted.toString('hex'),
  };
}

/** The base64 lines of a PEM private key: any of them in an output would be part of the key. */
function keyLines(name: string, file: string): Record<string, string> {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.length >= 32 && !l.startsWith('-----'));
  if (lines.length === 0) throw new Error(`${file} has no key lines`);
  return Object.fromEntries(lines.map((line, i) => [`${name}, line ${i + 1}`, line]));
}

t.test('no secret in any output', async (t) => {
  // TLS on both legs, with a client certificate to the servers: the private keys' contents are secrets too.
  const ca = await makeTestCa(t);
  const serverCert = await ca.issue('server', 'localhost', ['localhost', '127.0.0.1']);
  const proxyCert = await ca.issue('proxy', 'pgfloat', ['localhost', '127.0.0.1']);
  const pgfloatClientCert = await ca.issue('pgfloat-client', 'postgres');
  // pg_rewind reads the client key as the servers' OS user: libpq takes a root-owned key of mode 0640.
  const owner = unprivilegedUser();
  if (owner !== undefined) chownSync(pgfloatClientCert.key, 0, owner.gid);
  chmodSync(pgfloatClientCert.key, 0o640);
  Object.assign(SECRETS, keyLines('client-facing TLS key (tls.key)', proxyCert.key), keyLines('client certificate key to the servers (serverTls.key)', pgfloatClientCert.key));
  const tlsConfig = { tls: proxyCert, serverTls: { mode: 'verify-full', ca: ca.ca, ...pgfloatClientCert } };
  const cluster = await startCluster(t, { password: MONITOR_PASSWORD, authMethod: 'md5', tls: { ...serverCert, ca: ca.ca } });
  const superuser = cluster.primary.connectionString();
  for (const sql of [
    `set password_encryption = 'scram-sha-256'; create role app_scram login password '${SCRAM_PASSWORD}'`,
    `set password_encryption = 'md5'; create role app_md5 login password '${MD5_PASSWORD}'`,
    `set password_encryption = 'scram-sha-256'; create role replicator replication login password '${REPLICATION_PASSWORD}'`,
    // What pg_rewind needs from a role that is not a superuser.
    'grant execute on function pg_ls_dir(text, boolean, boolean), pg_stat_file(text, boolean), pg_read_binary_file(text), pg_read_binary_file(text, bigint, bigint, boolean) to replicator',
  ]) await queryOnce(superuser, sql);

  /** Everything pgfloat said, and everything said about it, in one place to scan. */
  const captured: Array<[string, string]> = [];
  const keep = (where: string, text: string): void => void captured.push([where, text]);
  const lines: string[] = [];
  const log = createLogger('trace', { write: (line: string) => void lines.push(line) });
  const proxy = await startPgfloat(
    t,
    cluster,
    { admin: { listen: '127.0.0.1:0', token: ADMIN_TOKEN }, management: { replicationUser: 'replicator', replicationPassword: REPLICATION_PASSWORD }, ...tlsConfig },
    { password: MONITOR_PASSWORD, log, managed: true },
  );
  const admin = proxy.adminUrl;
  const http = async (method: string, path: string, token?: string): Promise<number> => {
    const res = await fetch(`${admin}${path}`, { method, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    keep(`${method} ${path}`, `${res.status} ${JSON.stringify([...res.headers])} ${await res.text()}`);
    return res.status;
  };

  t.test('logins through pgfloat, good and bad', async (t) => {
    const at = { host: '127.0.0.1', port: proxy.readWritePort, database: 'postgres' };
    for (const [user, password, method] of [['app_scram', SCRAM_PASSWORD, 'SCRAM'], ['app_md5', MD5_PASSWORD, 'md5'], ['postgres', MONITOR_PASSWORD, 'md5']] as const) {
      const client = await connectClient({ ...at, user, password });
      t.same((await client.query('select current_user as u')).rows, [{ u: user }], `${user} logs in with ${method}`);
      await client.end();
      const wrong = await rejectionOf(connectClient({ ...at, user, password: `${password}-wrong` }));
      t.equal(wrong.code, '28P01', `${user} with a wrong password: 28P01`);
    }
    // Over TLS on both legs, by a client that could bind: pgfloat signs its SCRAM login again for the server.
    const bound = await connectClient({ ...at, user: 'app_scram', password: SCRAM_PASSWORD, ssl: { ca: readFileSync(ca.ca, 'utf8') }, enableChannelBinding: true } as never);
    t.same((await bound.query('select current_user as u')).rows, [{ u: 'app_scram' }], 'app_scram logs in over TLS with channel binding on offer');
    await bound.end();
    const ro = await queryOnce<{ r: boolean }>({ ...at, port: proxy.readOnlyPort, user: 'app_scram', password: SCRAM_PASSWORD }, 'select pg_is_in_recovery() as r');
    t.same(ro, [{ r: true }], 'and on the read-only port');
    t.equal((await rejectionOf(connectClient({ ...at, user: 'nobody', password: SCRAM_PASSWORD }))).code, '28P01', 'an unknown user');
  });

  t.test('admin API reads, refused operations and the CLI', async (t) => {
    await eventually(() => proxy.instance.status().nodes.every((n) => n.health === 'up'), 'both nodes up');
    for (const path of ['/status', '/metrics', '/operations', '/health', '/primary', '/replica']) t.equal(await http('GET', path), 200, `GET ${path}`);
    t.equal(await http('POST', '/fence/n2'), 401, 'an operation without a token');
    t.equal(await http('POST', '/fence/n2', `${ADMIN_TOKEN.slice(0, -1)}x`), 401, 'with a wrong token');
    t.equal(await http('POST', '/fence/n2', ADMIN_TOKEN.slice(0, 8)), 401, 'with a token prefix');
    const dir = mkdtempSync(join(tmpdir(), 'pgfloat-secrets-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'pgfloat.yaml');
    // Fixed ports, so the child's readiness is read from its admin API rather than its log.
    const childPorts = await pickPorts();
    writeFileSync(file, stringify({
      listen: { readWrite: `127.0.0.1:${childPorts.readWrite}`, readOnly: `127.0.0.1:${childPorts.readOnly}` },
      admin: { listen: `127.0.0.1:${childPorts.admin}`, token: ADMIN_TOKEN },
      nodes: cluster.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port })),
      monitor: { password: MONITOR_PASSWORD },
      management: { replicationUser: 'replicator', replicationPassword: REPLICATION_PASSWORD },
      ...tlsConfig,
      state: { dir: stateDirFor(t) },
      failover: { enabled: false },
      log: { level: 'trace' },
    }));
    const runs: Array<[string, string[], NodeJS.ProcessEnv]> = [
      ['status --json', ['status', '--json', '--admin', admin], {}],
      ['status', ['status', '--admin', admin], {}],
      ['operations with a wrong token', ['fence', 'n2', '--admin', admin], { PGFLOAT_ADMIN_TOKEN: `wrong-${ADMIN_TOKEN}` }],
      ['check-config', ['check-config', '--config', file], {}],
      ['check-config, secrets from the environment', ['check-config', '--config', file], { PGFLOAT_MONITOR_PASSWORD: MONITOR_PASSWORD, PGFLOAT_ADMIN_TOKEN: ADMIN_TOKEN }],
    ];
    for (const [name, args, env] of runs) {
      const run = await runCli(args, env);
      keep(`pgfloat ${name}`, run.stdout + run.stderr);
      t.equal(run.code, name.includes('wrong token') ? 1 : 0, `pgfloat ${name} exits ${name.includes('wrong token') ? 1 : 0}`);
    }
    t.match(captured.find(([w]) => w === 'pgfloat check-config')![1], /"password": "\[set\]"/, 'check-config shows that a password is set');

    // `pgfloat start` as a user runs it, logging at trace to its stdout, with a session and a refused operation.
    const child = spawn(process.execPath, [CLI_MAIN, 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    t.teardown(() => void child.kill('SIGKILL'));
    const childAdmin = `http://127.0.0.1:${childPorts.admin}`;
    const childRw = childPorts.readWrite;
    // The admin API starts after the client listeners: once it answers, both are up.
    await eventually(async () => (await fetch(`${childAdmin}/health`).then((r) => r.ok, () => false)), 'pgfloat start to serve its admin API', 20_000);
    await eventually(async () => ((await (await fetch(`${childAdmin}/status`)).json()) as { primary: string | null }).primary === 'n1', 'the child to route to n1');
    const viaChild = await queryOnce<{ n: number }>({ host: '127.0.0.1', port: childRw, user: 'app_scram', password: SCRAM_PASSWORD, database: 'postgres' }, 'select 1 as n');
    t.same(viaChild, [{ n: 1 }], 'a SCRAM login through `pgfloat start`');
    t.equal((await fetch(`${childAdmin}/fence/n2`, { method: 'POST', headers: { authorization: 'Bearer not-the-token' } })).status, 401, 'its operations want the token');
    child.kill('SIGTERM');
    t.equal(await exited, 0, 'pgfloat start stops cleanly on SIGTERM');
    keep('pgfloat start --log-level trace', output);
    t.match(output, /"level":10|"level":20/, 'its log has debug or trace lines');
  });

  t.test('a managed switchover uses the replication password, and says nothing of it', async (t) => {
    // Idle sessions move to the new primary, logging in again without their passwords.
    const at = { host: '127.0.0.1', port: proxy.readWritePort, database: 'postgres' };
    const movers = [await connectClient({ ...at, user: 'app_scram', password: SCRAM_PASSWORD }), await connectClient({ ...at, user: 'app_md5', password: MD5_PASSWORD })];
    for (const mover of movers) await mover.query("SET work_mem = '3MB'");
    const verifier = await queryOnce<{ p: string }>(superuser, "select rolpassword as p from pg_authid where rolname = 'app_scram'");
    Object.assign(SECRETS, scramSecrets(verifier[0]!.p, SCRAM_PASSWORD));
    const run = await runCli(['switchover', '--admin', admin], { PGFLOAT_ADMIN_TOKEN: ADMIN_TOKEN });
    keep('pgfloat switchover', run.stdout + run.stderr);
    t.equal(run.code, 0, `pgfloat switchover exits 0: ${run.stderr}`);
    t.match(run.stdout, /n1 follows it as a standby \((rewound|rebuilt)\)/, 'the old primary rejoined as a standby');
    const list = (await (await fetch(`${admin}/operations`)).json()) as { operations: Array<{ id: string }> };
    keep('the switchover record', JSON.stringify(await operationResult(admin, list.operations[0]!.id)));
    for (const path of ['/status', '/operations', '/metrics']) await http('GET', path);
    await eventually(() => proxy.instance.status().standbys.includes('n1'), 'n1 streams from n2');
    const autoConf = readFileSync(join(cluster.primary.dataDir, 'postgresql.auto.conf'), 'utf8');
    t.match(autoConf, new RegExp(`primary_conninfo = .*replicator.*password=''${REPLICATION_PASSWORD}''`), 'the password went where it belongs: n1\'s primary_conninfo');
    const client = await connectClient({ host: '127.0.0.1', port: proxy.readWritePort, user: 'app_md5', password: MD5_PASSWORD, database: 'postgres' });
    t.same((await client.query('select pg_is_in_recovery() as r')).rows, [{ r: false }], 'md5 login to the new primary');
    await client.end();
    for (const mover of movers) {
      const { rows } = await mover.query<{ u: string; r: boolean; w: string }>("select current_user as u, pg_is_in_recovery() as r, current_setting('work_mem') as w");
      t.same(rows, [{ u: mover.user, r: false, w: '3MB' }], `the ${mover.user} session moved to the new primary`);
      t.same((mover as typeof movers[number]).errors, [], 'without an error');
      await mover.end();
    }
    t.equal(proxy.instance.status().sessionMoves.moved, 2, 'both moved');
  });

  t.test('scan', async (t) => {
    keep('pgfloat log (trace)', lines.join(''));
    t.ok(lines.length > 50, `${lines.length} log lines captured`);
    t.ok(lines.some((l) => /session established/.test(l)) && lines.some((l) => /"level":10/.test(l) || /"level":20/.test(l)), 'including debug lines about sessions');
    const bytes = captured.reduce((n, [, text]) => n + Buffer.byteLength(text), 0);
    t.comment(`scanned ${captured.length} outputs, ${bytes} bytes`);
    for (const [name, secret] of Object.entries(SECRETS)) {
      const found = captured.filter(([, text]) => text.includes(secret)).map(([where]) => where);
      t.same(found, [], `the ${name} appears nowhere`);
    }
  });
});

/** Whether something accepts a TCP connection at host:port. */
function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

const OPERATIONS = ['/switchover', '/failover', '/fence/n1', '/unfence/n1', '/rejoin/n1', '/adopt/n1'];

t.test('admin API: loopback unless configured; every operation 401 without the right token', async (t) => {
  const down = await freePort(); // nothing listens there: the one node is down, which is all these checks need
  const config = (admin?: Record<string, unknown>) =>
    parseConfigObject({ listen: { readWrite: '127.0.0.1:0', readOnly: null }, nodes: [{ name: 'n1', host: '127.0.0.1', port: down }], state: { dir: stateDirFor(t) }, ...(admin && { admin }) }, 'test', {});
  const start = async (admin?: Record<string, unknown>): Promise<Pgfloat> => {
    const instance = new Pgfloat(config(admin), silentLogger);
    t.teardown(() => instance.stop());
    await instance.start();
    return instance;
  };
  t.same(config().admin, { listen: { host: '127.0.0.1', port: 8008 }, token: null }, 'the default: 127.0.0.1:8008, no token');

  const byDefault = await start();
  t.same(byDefault.address('admin'), { host: '127.0.0.1', port: 8008 }, 'the default config listens on 127.0.0.1:8008');
  t.ok(await reachable('127.0.0.1', 8008), 'reachable there');
  t.notOk(await reachable('127.0.0.2', 8008), 'not on another loopback address: bound to 127.0.0.1, not a wildcard');
  const external = Object.values(networkInterfaces()).flat().filter((a) => a !== undefined && !a.internal && a.family === 'IPv4');
  for (const a of external) t.notOk(await reachable(a!.address, 8008), `not on ${a!.address}`);

  const wildcard = await start({ listen: '0.0.0.0:0' });
  t.equal(wildcard.address('admin')!.host, '0.0.0.0', "admin.listen '0.0.0.0:0' binds every address");
  t.ok(await reachable('127.0.0.2', wildcard.address('admin')!.port), 'and answers on 127.0.0.2');
  const other = await start({ listen: '127.0.0.2:0' });
  t.same(other.address('admin')!.host, '127.0.0.2', 'a configured address is used as given');
  t.notOk(await reachable('127.0.0.1', other.address('admin')!.port), 'and only it');
  t.equal((await start({ listen: null })).address('admin'), undefined, 'null: no admin API');

  const post = async (base: string, path: string, authorization?: string): Promise<{ status: number; challenge: string | null }> => {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers: authorization === undefined ? {} : { authorization } });
    await res.text();
    return { status: res.status, challenge: res.headers.get('www-authenticate') };
  };
  for (const path of OPERATIONS) {
    for (const authorization of [undefined, `Bearer ${ADMIN_TOKEN}`]) {
      t.same(await post('http://127.0.0.1:8008', path, authorization), { status: 401, challenge: 'Bearer' }, `no token configured: POST ${path} ${authorization ? 'with a token' : 'without one'}: 401`);
    }
  }

  const guarded = await start({ listen: '127.0.0.1:0', token: ADMIN_TOKEN });
  const base = `http://127.0.0.1:${guarded.address('admin')!.port}`;
  const wrong: Array<[string, string | undefined]> = [
    ['no header', undefined],
    ['a wrong token of the same length', `Bearer ${'x'.repeat(ADMIN_TOKEN.length)}`],
    ['a shorter token', `Bearer ${ADMIN_TOKEN.slice(0, -1)}`],
    ['a longer token', `Bearer ${ADMIN_TOKEN}x`],
    ['an empty token', 'Bearer '],
    ['the token without the scheme', ADMIN_TOKEN],
    ['Basic credentials', `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}`],
    // Latin-1 characters: as many characters as the token, twice its length in bytes, and the other way round.
    ['as many characters, more bytes', `Bearer ${'\u00e9'.repeat(ADMIN_TOKEN.length)}`],
    ['as many bytes, fewer characters', `Bearer ${'\u00e9'.repeat(ADMIN_TOKEN.length / 2)}`],
  ];
  let refused = 0;
  for (const path of OPERATIONS) {
    for (const [name, authorization] of wrong) {
      const answer = await post(base, path, authorization);
      if (answer.status === 401 && answer.challenge === 'Bearer') refused++;
      else t.fail(`POST ${path} with ${name}: ${JSON.stringify(answer)}`);
    }
  }
  t.equal(refused, OPERATIONS.length * wrong.length, `all ${refused} requests without the right token: 401 with a Bearer challenge`);
  t.equal((await fetch(`${base}/health`)).status, 200, 'the API still answers (a compare that threw would have been a 500 or a crash)');
  t.same(((await (await fetch(`${base}/operations`)).json()) as { operations: unknown[] }).operations, [], 'no operation was started');
  t.same(guarded.status().nodes.map((n) => n.fenced), [false], 'nothing was fenced');
  t.equal((await post(base, '/fence/nope', `Bearer ${ADMIN_TOKEN}`)).status, 404, 'the right token gets past the check (to a 404 for an unknown node)');
  t.equal((await post(base, '/fence/nope', `bearer ${ADMIN_TOKEN}`)).status, 404, 'the scheme name is case-insensitive');
});
