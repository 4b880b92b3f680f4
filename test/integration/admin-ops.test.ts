// Admin operations: bearer token, node validation, and the CLI that calls them.
import t from 'tap';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';

const main = resolve(__dirname, '../../src/cli/main.js');
const TOKEN = 'test-token-0123456789abcdef';

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [main, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

t.test('operations need the token; the CLI drives them', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster, { admin: { listen: '127.0.0.1:0', token: TOKEN } });
  const post = (path: string, token?: string, body?: unknown): Promise<Response> =>
    fetch(`${proxy.adminUrl}${path}`, {
      method: 'POST',
      headers: token ? { authorization: `Bearer ${token}` } : {},
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  t.equal((await post('/fence/n2')).status, 401, 'no token: 401');
  t.equal((await post('/fence/n2', 'wrong-token-0123456789')).status, 401, 'wrong token: 401');
  t.equal((await post('/fence/nope', TOKEN)).status, 404, 'unknown node: 404');
  t.equal((await post('/adopt', TOKEN)).status, 400, 'adopt without a node: 400');
  t.equal((await post('/failover', TOKEN, [1, 2])).status, 400, 'a body that is not an object: 400');
  t.equal(proxy.instance.status().nodes.find((n) => n.name === 'n2')!.fenced, false, 'refused operations changed nothing');

  const adopt = await post('/adopt/n1', TOKEN);
  t.equal(adopt.status, 409, 'adopt with a primary already recorded is refused');
  t.match(((await adopt.json()) as { message: string }).message, /already has a primary/);

  const env = { PGFLOAT_ADMIN_TOKEN: TOKEN };
  const fence = await cli(['fence', 'n2', '--admin', proxy.adminUrl], env);
  t.equal(fence.code, 0, `pgfloat fence exits 0 (${fence.stderr})`);
  t.match(fence.stdout, /fencing n2/);
  await eventually(() => proxy.instance.status().nodes.find((n) => n.name === 'n2')!.fenced, 'n2 fenced');
  const status = await cli(['status', '--admin', proxy.adminUrl]);
  t.equal(status.code, 0);
  t.match(status.stdout, /epoch 1, phase steady/);
  t.match(status.stdout, /n2 .*\byes\b/, 'the table shows n2 fenced');
  const json = await cli(['status', '--json', '--admin', proxy.adminUrl]);
  t.equal((JSON.parse(json.stdout) as { primary: string }).primary, 'n1');

  const unfence = await cli(['unfence', 'n2', '--admin', proxy.adminUrl], env);
  t.equal(unfence.code, 0);
  await eventually(() => !proxy.instance.status().nodes.find((n) => n.name === 'n2')!.fenced, 'n2 unfenced');

  const noToken = await cli(['fence', 'n2', '--admin', proxy.adminUrl], { PGFLOAT_ADMIN_TOKEN: '' });
  t.not(noToken.code, 0, 'without a token the CLI fails');
  t.match(noToken.stderr, /token/);
  const unreachable = await cli(['status', '--admin', 'http://127.0.0.1:9']);
  t.not(unreachable.code, 0);
  t.match(unreachable.stderr, /cannot reach the admin API/);
});
