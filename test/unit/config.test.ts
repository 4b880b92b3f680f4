// parseConfigText: the documented example with defaults filled in, and every bad config naming its key.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, parseConfigText, redactConfig } from '../../src/config/load';

const example = `
listen:
  readWrite: 0.0.0.0:6432
  readOnly: 0.0.0.0:6433

admin:
  listen: 127.0.0.1:8008

nodes:
  - { name: db1, host: 10.0.0.11, port: 5432 }
  - { name: db2, host: 10.0.0.12 }

monitor:
  user: pgfloat_monitor
  password: ""
  database: postgres
  intervalMs: 250
  timeoutMs: 1000
  failuresBeforeDown: 3

state:
  dir: /var/lib/pgfloat
`;

const minimal = 'nodes:\n  - { name: n1, host: 127.0.0.1 }\n';

/** Parses `text` expecting a ConfigError; returns its message ('' when none was thrown). */
function errorOf(t: tap.Test, text: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    parseConfigText(text, 'bad.yaml', env);
  } catch (err) {
    t.type(err, ConfigError, 'a ConfigError');
    t.equal((err as ConfigError).source, 'bad.yaml', 'names the source');
    return (err as Error).message;
  }
  t.fail('expected a ConfigError');
  return '';
}

t.test('the documented example parses with defaults filled in', async (t) => {
  const config = parseConfigText(example, 'example.yaml', {});
  t.same(config.listen, { readWrite: { host: '0.0.0.0', port: 6432 }, readOnly: { host: '0.0.0.0', port: 6433 } });
  t.same(config.admin, { listen: { host: '127.0.0.1', port: 8008 }, token: null });
  t.same(config.nodes, [
    { name: 'db1', host: '10.0.0.11', port: 5432, promotable: true, serverTls: null, dataDir: null, commands: { stop: null, start: null, rejoin: null } },
    { name: 'db2', host: '10.0.0.12', port: 5432, promotable: true, serverTls: null, dataDir: null, commands: { stop: null, start: null, rejoin: null } },
  ]);
  t.same(config.monitor, {
    user: 'pgfloat_monitor',
    password: '',
    database: 'postgres',
    intervalMs: 250,
    timeoutMs: 1000,
    failuresBeforeDown: 3,
  });
  t.same(config.state, { store: 'file', dir: '/var/lib/pgfloat', etcd: null });
  // Sections the example leaves out get their defaults.
  t.same(config.readOnly, { fallbackToPrimary: true, maxLagBytes: null });
  t.same(config.routing, { rules: [] });
  t.equal(config.tls, null);
  t.same(config.proxy, { startupTimeoutMs: 10_000, connectTimeoutMs: 5_000, maxClientConnections: 10_000, keepaliveIdleMs: 30_000, busyPollUs: 0, workers: 'auto' });
  t.same(config.log, { level: 'info' });
  t.same(config.sessions, { move: true, authQuery: 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', moveTimeoutMs: 5_000 });
});

t.test('a config with only nodes gets every default', async (t) => {
  const config = parseConfigText(minimal, 'min.yaml', {});
  t.same(config.listen, { readWrite: { host: '127.0.0.1', port: 6432 }, readOnly: { host: '127.0.0.1', port: 6433 } });
  t.same(config.admin, { listen: { host: '127.0.0.1', port: 8008 }, token: null });
  t.same(config.monitor, { user: 'postgres', password: '', database: 'postgres', intervalMs: 500, timeoutMs: 1000, failuresBeforeDown: 3 });
  t.same(config.state, { store: 'file', dir: './.pgfloat/state', etcd: null });
  t.same(config.failover, {
    enabled: true,
    requireStandbyConfirmation: true,
    standbyConfirmationMs: 3000,
    maxLagBytes: 1024 * 1024,
    holdMs: 10_000,
    promoteTimeoutMs: 10_000,
    retryIntervalMs: 5_000,
    keepSynchronousWhenAlone: false,
  });
  t.same(config.fencing, { action: 'sql', command: null, timeoutMs: 10_000 });
});

t.test('address forms: bare port, :port, [v6]:port, null listeners', async (t) => {
  const config = parseConfigText(
    `${minimal}listen: { readWrite: 7000, readOnly: "[::1]:7001" }\nadmin: { listen: ":7002" }\n`,
    'x.yaml',
    {},
  );
  t.same(config.listen.readWrite, { host: '127.0.0.1', port: 7000 });
  t.same(config.listen.readOnly, { host: '::1', port: 7001 });
  t.same(config.admin.listen, { host: '0.0.0.0', port: 7002 });
  const off = parseConfigText(`${minimal}listen: { readOnly: null }\nadmin: { listen: null }\n`, 'x.yaml', {});
  t.equal(off.listen.readOnly, null);
  t.equal(off.admin.listen, null);
});

t.test('PGFLOAT_MONITOR_PASSWORD fills an empty password, never a set one', async (t) => {
  t.equal(parseConfigText(example, 'x.yaml', { PGFLOAT_MONITOR_PASSWORD: 's3cret' }).monitor.password, 's3cret');
  t.equal(parseConfigText(minimal, 'x.yaml', { PGFLOAT_MONITOR_PASSWORD: 's3cret' }).monitor.password, 's3cret', 'password key absent');
  t.equal(parseConfigText(example, 'x.yaml', {}).monitor.password, '', 'no env: stays empty');
  const set = example.replace('password: ""', 'password: "fromfile"');
  t.equal(parseConfigText(set, 'x.yaml', { PGFLOAT_MONITOR_PASSWORD: 's3cret' }).monitor.password, 'fromfile');
});

t.test('bad configs name the key', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['unknown top-level key', `${minimal}listne: { readWrite: 6432 }\n`, /^listne: unknown key/m],
    ['unknown nested key', `${minimal}monitor: { intervalMS: 500 }\n`, /^monitor\.intervalMS: unknown key/m],
    ['unknown key in a node', 'nodes: [{ name: n1, host: h, prot: 5 }]\n', /^nodes\[0\]\.prot: unknown key/m],
    ['wrong type', 'nodes: [{ name: n1, host: h, port: "abc" }]\n', /^nodes\[0\]\.port: .*number/m],
    ['port out of range in a node', 'nodes: [{ name: n1, host: h, port: 70000 }]\n', /^nodes\[0\]\.port: /m],
    ['wrong type nested', `${minimal}readOnly: { fallbackToPrimary: "yes please" }\n`, /^readOnly\.fallbackToPrimary: .*boolean/m],
    ['missing nodes', 'listen: { readWrite: 6432 }\n', /^nodes: Required/m],
    ['empty document', '', /^nodes: /m],
    ['empty nodes', 'nodes: []\n', /^nodes: at least one node is required/m],
    ['duplicate node names', 'nodes: [{ name: a, host: h1 }, { name: b, host: h2 }, { name: a, host: h3 }]\n', /^nodes\[2\]\.name: duplicate node name "a"/m],
    ['bad node name', 'nodes: [{ name: "has space", host: h }]\n', /^nodes\[0\]\.name: /m],
    ['unparsable address', `${minimal}listen: { readWrite: nonsense }\n`, /^listen\.readWrite: .*nonsense/m],
    ['port out of range', `${minimal}listen: { readWrite: "host:99999" }\n`, /^listen\.readWrite: .*99999/m],
    ['unbracketed IPv6', `${minimal}listen: { readOnly: "::1:6433" }\n`, /^listen\.readOnly: .*brackets/m],
    ['bad admin address', `${minimal}admin: { listen: "localhost:http" }\n`, /^admin\.listen: .*http/m],
    ['rule without match fields', `${minimal}routing: { rules: [{ user: a, route: readOnly }, { route: readOnly }] }\n`, /^routing\.rules\[1\]: .*user, database, applicationName/m],
    ['rule with a bad route', `${minimal}routing: { rules: [{ user: a, route: primary }] }\n`, /^routing\.rules\[0\]\.route: /m],
    ['readOnly equal to readWrite', `${minimal}listen: { readWrite: "127.0.0.1:7000", readOnly: "127.0.0.1:7000" }\n`, /^listen\.readOnly: port 7000 is already used by listen\.readWrite/m],
    ['readOnly equal to readWrite in another spelling', `${minimal}listen: { readWrite: 7000, readOnly: "127.0.0.1:7000" }\n`, /^listen\.readOnly: port \d+ is already used/m],
    ['negative interval', `${minimal}monitor: { intervalMs: -5 }\n`, /^monitor\.intervalMs: /m],
    ['bad log level', `${minimal}log: { level: verbose }\n`, /^log\.level: /m],
    ['workers neither auto nor a count', `${minimal}proxy: { workers: many }\n`, /^proxy\.workers: /m],
    ['zero workers', `${minimal}proxy: { workers: 0 }\n`, /^proxy\.workers: /m],
    ['sessions.move not a boolean', `${minimal}sessions: { move: sometimes }\n`, /^sessions\.move: /m],
    ['an empty auth query', `${minimal}sessions: { authQuery: '' }\n`, /^sessions\.authQuery: /m],
    ['zero move timeout', `${minimal}sessions: { moveTimeoutMs: 0 }\n`, /^sessions\.moveTimeoutMs: /m],
    ['top level not a mapping', '- a\n- b\n', /^\(root\): /m],
  ];
  for (const [name, text, pattern] of cases) {
    t.test(name, async (t) => {
      t.match(errorOf(t, text), pattern);
    });
  }
});

t.test('invalid YAML is reported as such, with the position', async (t) => {
  const message = errorOf(t, 'nodes: [{ name: n1, host: h }\nlisten: {\n');
  t.match(message, /^invalid YAML: /);
  t.match(message, /line \d+/);
  // Duplicate keys are refused rather than the last one silently winning.
  t.match(errorOf(t, `${minimal}nodes: []\n`), /^invalid YAML: .*unique/);
});

t.test('several problems are all reported', async (t) => {
  const message = errorOf(t, 'nodes: [{ name: n1, host: h, port: x }]\nmonitor: { timeoutMs: "1s" }\nbogus: 1\n');
  t.match(message, /nodes\[0\]\.port/);
  t.match(message, /monitor\.timeoutMs/);
  t.match(message, /bogus: unknown key/);
});

t.test('listeners that would collide on bind are caught at config time', async (t) => {
  // 0.0.0.0:7000 includes 127.0.0.1:7000: the second bind fails with EADDRINUSE at run time.
  let message = '';
  try {
    parseConfigText(`${minimal}listen: { readWrite: "0.0.0.0:7000", readOnly: "127.0.0.1:7000" }\n`, 'x.yaml', {});
  } catch (err) {
    message = (err as Error).message;
  }
  t.match(message, /listen\.readOnly/, 'wildcard readWrite overlapping readOnly');
  message = '';
  try {
    parseConfigText(`${minimal}listen: { readWrite: "127.0.0.1:7000" }\nadmin: { listen: "127.0.0.1:7000" }\n`, 'x.yaml', {});
  } catch (err) {
    message = (err as Error).message;
  }
  t.match(message, /admin\.listen/, 'admin listener equal to readWrite');
});

t.test('the shipped example configs parse', async (t) => {
  const dir = join(__dirname, '..', '..', '..', 'config');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  t.ok(files.length > 0, 'there are example configs');
  for (const file of files) {
    const config = parseConfigText(readFileSync(join(dir, file), 'utf8'), file, {});
    t.ok(config.nodes.length >= 1, `${file}: parses, with nodes`);
  }
});

t.test('failover and fencing keys: checked like the rest', async (t) => {
  const bad = (text: string): string => errorOf(t, `${minimal}${text}`);
  t.match(bad('fencing: { action: command }\n'), /^fencing\.command: .*needs fencing\.command/m);
  t.match(bad('fencing: { action: reboot }\n'), /^fencing\.action: /m);
  t.match(bad('failover: { maxLagBytes: -1 }\n'), /^failover\.maxLagBytes: /m);
  t.match(bad('failover: { holdMS: 5 }\n'), /failover\.holdMS: unknown key/);
  t.match(bad('admin: { token: short }\n'), /^admin\.token: use at least 16 characters/m);
  const fromEnv = parseConfigText(minimal, 'x.yaml', { PGFLOAT_ADMIN_TOKEN: 'from-the-environment-123' });
  t.equal(fromEnv.admin.token, 'from-the-environment-123', 'PGFLOAT_ADMIN_TOKEN when admin.token is unset');
  t.throws(() => parseConfigText(minimal, 'x.yaml', { PGFLOAT_ADMIN_TOKEN: 'short' }), /PGFLOAT_ADMIN_TOKEN/);
  const command = parseConfigText(`${minimal}fencing: { action: command, command: "ssh db1 pg_ctl stop" }\n`, 'x.yaml', {});
  t.equal(command.fencing.command, 'ssh db1 pg_ctl stop');
});

t.test('state.store etcd: checked like the rest; its password comes from the environment and is never shown', async (t) => {
  const bad = (text: string): string => errorOf(t, `${minimal}${text}`);
  t.match(bad('state: { store: etcd }\n'), /^state\.etcd: state\.store "etcd" needs a state\.etcd section/m);
  t.match(bad('state: { store: zookeeper }\n'), /^state\.store: /m);
  t.match(bad('state: { store: etcd, etcd: { endpoints: [] } }\n'), /^state\.etcd\.endpoints: at least one etcd endpoint/m);
  t.match(bad('state: { store: etcd, etcd: { endpoints: ["10.0.0.5:2379"] } }\n'), /^state\.etcd\.endpoints\[0\]: an etcd endpoint is a URL/m);
  t.match(bad('state: { store: etcd, etcd: { endpoints: ["http://e:2379"], prefix: "pgfloat" } }\n'), /^state\.etcd\.prefix: a prefix is a path/m);
  t.match(bad('state: { store: etcd, etcd: { endpoints: ["http://e:2379"], leaseTtlSeconds: 1 } }\n'), /^state\.etcd\.leaseTtlSeconds: /m);
  t.match(bad('state: { store: etcd, etcd: { endpoints: ["http://e:2379"], tls: { cert: c.pem } } }\n'), /^state\.etcd\.tls\.key: .*both cert and key/m);
  t.match(bad('state: { store: etcd, etcd: { endpoints: ["http://e:2379"] } }\nfailover: { enabled: false }\n'), /state\.store: "etcd" needs failover\.enabled: true/);

  const text = `${minimal}state: { store: etcd, etcd: { endpoints: ["https://e:2379"], username: pgfloat } }\n`;
  const config = parseConfigText(text, 'x.yaml', { PGFLOAT_ETCD_PASSWORD: 'etcd-secret' });
  t.equal(config.state.etcd?.password, 'etcd-secret', 'PGFLOAT_ETCD_PASSWORD fills an empty password');
  t.equal(config.state.etcd?.prefix, '/pgfloat/default');
  t.equal(config.state.etcd?.leaseTtlSeconds, 3);
  t.notMatch(JSON.stringify(redactConfig(config)), /etcd-secret/, 'check-config shows it only as set');
});
