// `pgfloat sandbox` end to end: it creates, serves, stops on SIGINT, reuses; and says how to install PostgreSQL when it is missing.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { freePort } from '../../src/sandbox/ports';

const main = resolve(__dirname, '../../src/cli/main.js');

t.test('without PostgreSQL binaries it explains how to install them and exits non-zero', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-sandbox-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = spawnSync(process.execPath, [main, 'sandbox', '--dir', dir], {
    env: { ...process.env, PGFLOAT_PG_BINDIR: join(dir, 'no-such-bin') },
    encoding: 'utf8',
  });
  t.not(run.status, 0, 'exit status is non-zero');
  t.match(run.stderr, /apt-get install postgresql/, 'names the package to install');
});

interface Started {
  stop(signal: NodeJS.Signals): Promise<number | null>;
  output(): string;
}

async function startSandbox(dir: string, ports: { proxy: number; node: number; admin: number }): Promise<Started> {
  const child = spawn(
    process.execPath,
    [main, 'sandbox', '--dir', dir, '--port', String(ports.proxy), '--node-port', String(ports.node), '--admin-port', String(ports.admin), '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`sandbox did not start:\n${output}`)), 120_000);
    const check = (): void => {
      if (output.includes('pgfloat sandbox is running')) {
        clearTimeout(timer);
        ready();
      }
    };
    child.stdout.on('data', check);
    void exited.then(() => fail(new Error(`sandbox exited early:\n${output}`)));
  });
  return {
    output: () => output,
    stop: (signal) => {
      child.kill(signal);
      return exited;
    },
  };
}

async function writeAndRead(port: number, sql: string): Promise<unknown[]> {
  const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

t.test('creates a primary and standby, serves both ports, stops on SIGINT and is reused by a second start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-sandbox-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The sandbox uses port and port+1 both for the proxy's listeners and for the two servers.
  const ports = { proxy: await freePort(), node: await freePort(), admin: await freePort() };
  if (Math.abs(ports.node - ports.proxy) <= 1) ports.node += 4;

  const first = await startSandbox(dir, ports);
  t.match(first.output(), `read-write: postgres://postgres@127.0.0.1:${ports.proxy}/postgres`);
  t.match(first.output(), `read-only:  postgres://postgres@127.0.0.1:${ports.proxy + 1}/postgres`);
  await writeAndRead(ports.proxy, 'create table kept (v int); insert into kept values (42)');
  t.same(await writeAndRead(ports.proxy, 'select pg_is_in_recovery() as r'), [{ r: false }], 'read-write reaches the primary');
  t.same(await writeAndRead(ports.proxy + 1, 'select pg_is_in_recovery() as r'), [{ r: true }], 'read-only reaches the standby');
  t.equal(await first.stop('SIGINT'), 0, 'SIGINT stops it cleanly');
  const direct = new Client({ host: '127.0.0.1', port: ports.node, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
  await t.rejects(direct.connect(), 'the primary was stopped with it');

  const second = await startSandbox(dir, ports);
  t.same(await writeAndRead(ports.proxy, 'select v from kept'), [{ v: 42 }], 'the second start reuses the data');
  t.equal(await second.stop('SIGTERM'), 0, 'SIGTERM stops it cleanly');
});
