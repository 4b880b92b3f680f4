// The command line's exit statuses for configuration problems: 2 and a message naming the key.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';

const main = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    if (!('PGFLOAT_MONITOR_PASSWORD' in env)) delete childEnv.PGFLOAT_MONITOR_PASSWORD;
    const child = spawn(process.execPath, [main, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // A bad config must fail at once; a hung `start` would otherwise keep the test waiting forever.
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(guard);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'pgfloat-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const bad: Array<[string, string, RegExp]> = [
  ['typo.yaml', 'nodes: [{ name: n1, host: 127.0.0.1 }]\nmonitor: { intervalMS: 500 }\n', /monitor\.intervalMS: unknown key/],
  ['port.yaml', 'nodes: [{ name: n1, host: 127.0.0.1, port: "abc" }]\n', /nodes\[0\]\.port/],
  ['listen.yaml', 'nodes: [{ name: n1, host: 127.0.0.1 }]\nlisten: { readWrite: nonsense }\n', /listen\.readWrite/],
  ['nonodes.yaml', 'listen: { readWrite: 6432 }\n', /nodes: Required/],
];

for (const command of ['check-config', 'start']) {
  t.test(`${command} with a bad config exits 2 naming the key`, async (t) => {
    for (const [name, text, pattern] of bad) {
      const path = file(name, text);
      const result = await run([command, '--config', path]);
      t.equal(result.status, 2, `${name}: exit status (stderr: ${result.stderr.trim()})`);
      t.match(result.stderr, pattern, `${name}: stderr names the key`);
      t.match(result.stderr, path, `${name}: stderr names the file`);
      t.equal(result.stdout, '', `${name}: nothing on stdout`);
    }
  });

  t.test(`${command} with a missing file exits 2`, async (t) => {
    const missing = join(dir, 'does-not-exist.yaml');
    const result = await run([command, '--config', missing]);
    t.equal(result.status, 2, `exit status (stderr: ${result.stderr.trim()})`);
    t.match(result.stderr, /cannot read config file/);
    t.match(result.stderr, missing);
  });

  t.test(`${command} without --config exits 2`, async (t) => {
    const result = await run([command]);
    t.equal(result.status, 2);
    t.match(result.stderr, /--config/);
  });
}

t.test('check-config of a good file exits 0 and prints JSON without the password', async (t) => {
  const secret = 'hunter2-do-not-print';
  const path = file(
    'good.yaml',
    `listen: { readWrite: "127.0.0.1:7432", readOnly: null }\nnodes:\n  - { name: n1, host: 127.0.0.1, port: 15432 }\n  - { name: n2, host: 127.0.0.1, port: 15433 }\nmonitor: { user: mon, password: "${secret}" }\n`,
  );
  const result = await run(['check-config', '--config', path]);
  t.equal(result.status, 0, `exit status (stderr: ${result.stderr.trim()})`);
  t.equal(result.stderr, '');
  t.notMatch(result.stdout, secret, 'the password does not appear');
  const shown = JSON.parse(result.stdout) as {
    listen: unknown;
    nodes: unknown;
    monitor: { user: string; password: string; intervalMs: number };
  };
  t.same(shown.listen, { readWrite: { host: '127.0.0.1', port: 7432 }, readOnly: null });
  t.same(shown.nodes, [
    { name: 'n1', host: '127.0.0.1', port: 15432, promotable: true, serverTls: null, dataDir: null, commands: { stop: null, start: null, rejoin: null } },
    { name: 'n2', host: '127.0.0.1', port: 15433, promotable: true, serverTls: null, dataDir: null, commands: { stop: null, start: null, rejoin: null } },
  ]);
  t.equal(shown.monitor.user, 'mon');
  t.equal(shown.monitor.password, '[set]');
  t.equal(shown.monitor.intervalMs, 500, 'defaults filled in');
});

t.test('check-config hides the replication password, set or inherited', async (t) => {
  const path = file('replpw.yaml', 'nodes: [{ name: n1, host: 127.0.0.1 }]\nmanagement: { replicationPassword: "repl-secret-value" }\n');
  const result = await run(['check-config', '--config', path], { PGFLOAT_MONITOR_PASSWORD: 'monitor-secret-value' });
  t.equal(result.status, 0);
  t.notMatch(result.stdout, /repl-secret-value|monitor-secret-value/, 'neither password appears');
  const shown = JSON.parse(result.stdout) as { management: { replicationPassword: string } };
  t.equal(shown.management.replicationPassword, '[set]');
});

t.test('check-config hides a password that comes from PGFLOAT_MONITOR_PASSWORD', async (t) => {
  const secret = 'env-secret-value';
  const path = file('envpw.yaml', 'nodes: [{ name: n1, host: 127.0.0.1 }]\n');
  const result = await run(['check-config', '--config', path], { PGFLOAT_MONITOR_PASSWORD: secret });
  t.equal(result.status, 0);
  t.notMatch(result.stdout, secret);
  t.equal((JSON.parse(result.stdout) as { monitor: { password: string } }).monitor.password, '[set]');
  const none = await run(['check-config', '--config', path]);
  t.equal(none.status, 0);
  t.equal((JSON.parse(none.stdout) as { monitor: { password: string } }).monitor.password, '', 'no password: shown empty');
});
