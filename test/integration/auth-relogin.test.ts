// Logging in again as a user without the password: a real client's login is recorded through a
// relay, the role's stored password is read as the superuser, and ServerLogin then logs in as that
// user on fresh connections to the primary and to its physical standby (same pg_authid).

import t from 'tap';
import type { CapturedAuth } from '../../src/auth/auth-capture';
import { loginSecretOf, type LoginSecret } from '../../src/auth/login-secret';
import { LoginError } from '../../src/auth/server-login';
import type { AuthMethod, LocalCluster } from '../../src/sandbox/local-cluster';
import { connectClient, queryOnce, rejectionOf } from '../harness/clients';
import { startCluster } from '../harness/cluster';
import { logInDirectly, simpleQueryRows } from '../harness/direct-login';
import { LoginRecorder } from '../harness/login-recorder';
import { eventually } from '../harness/waiting';

const SUPERUSER_PASSWORD = 'sekret';
const APP_PASSWORD = 'app-pa$$word, with a comma';

interface Recorded {
  cluster: LocalCluster;
  startupPacket: Buffer;
  captured: CapturedAuth;
  rolpassword: string | null;
}

async function rolpasswordOf(cluster: LocalCluster, role: string): Promise<string | null> {
  const rows = await queryOnce<{ rolpassword: string | null }>(cluster.primary.connectionString(), 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role]);
  return rows[0]!.rolpassword;
}

/** A cluster whose TCP logins use `authMethod`, a role "app", and one real login of app through the recorder. */
async function recordLogin(t: tap.Test, authMethod: AuthMethod): Promise<Recorded> {
  const cluster = await startCluster(t, authMethod === 'trust' ? {} : { password: SUPERUSER_PASSWORD, authMethod });
  const admin = cluster.primary.connectionString();
  const password = authMethod === 'trust' ? '' : ` PASSWORD '${APP_PASSWORD}'`;
  await queryOnce(admin, `CREATE ROLE app LOGIN${password}`);
  await eventually(
    async () => (await queryOnce(cluster.standby.connectionString(), `SELECT 1 FROM pg_roles WHERE rolname = 'app'`)).length === 1,
    'the standby to have replayed the new role',
  );

  const recorder = await LoginRecorder.start(t, cluster.primary.port);
  const client = await connectClient({ host: '127.0.0.1', port: recorder.port, user: 'app', password: APP_PASSWORD, database: 'postgres' });
  const { rows } = await client.query<{ user: string }>('select current_user as user');
  t.same(rows, [{ user: 'app' }], 'the real client logged in through the recorder');
  await client.end();

  t.equal(recorder.logins.length, 1);
  const { startupPacket, capture } = recorder.logins[0]!;
  t.ok(capture.done, 'the capture saw AuthenticationOk');
  t.ok(startupPacket, 'and the startup packet');
  return { cluster, startupPacket: startupPacket!, captured: capture.result(), rolpassword: await rolpasswordOf(cluster, 'app') };
}

function secretOf(t: tap.Test, recorded: Recorded): LoginSecret {
  const secret = loginSecretOf(recorded.captured, recorded.rolpassword);
  if ('error' in secret) throw new Error(`loginSecretOf: ${secret.error}`);
  t.equal(secret.method, recorded.captured.method);
  return secret;
}

/** Logs in with `secret` to both nodes and checks who the session is, and on which node. */
async function logInToBothNodes(t: tap.Test, recorded: Recorded, secret: LoginSecret): Promise<void> {
  for (const [node, inRecovery] of [[recorded.cluster.primary, 'f'], [recorded.cluster.standby, 't']] as const) {
    const session = await logInDirectly(t, node.port, recorded.startupPacket, secret);
    const { loggedIn } = session;
    t.equal(loggedIn.parameters.get('session_authorization'), 'app', `${node.name}: the server says the session is app's`);
    t.equal(loggedIn.secretKey.length, 4, `${node.name}: a protocol 3.0 cancel key`);
    t.same(loggedIn.rest, Buffer.alloc(0), `${node.name}: nothing after ReadyForQuery`);
    const rows = await simpleQueryRows(session, 'select current_user, pg_backend_pid(), pg_is_in_recovery()');
    t.same(rows, [['app', String(loggedIn.processId), inRecovery]], `${node.name}: logged in as app, the backend from BackendKeyData`);
    session.socket.destroy();
  }
}

t.test('trust', async (t) => {
  const recorded = await recordLogin(t, 'trust');
  t.same(recorded.captured, { method: 'trust' });
  t.equal(recorded.rolpassword, null, 'app has no password at all');
  await logInToBothNodes(t, recorded, secretOf(t, recorded));
});

t.test('md5', async (t) => {
  const recorded = await recordLogin(t, 'md5');
  t.equal(recorded.captured.method, 'md5');
  t.match(recorded.rolpassword, /^md5[0-9a-f]{32}$/, 'stored as an md5 hash');
  const secret = secretOf(t, recorded);
  await logInToBothNodes(t, recorded, secret);

  const wrongHash = await rejectionOf(logInDirectly(t, recorded.cluster.primary.port, recorded.startupPacket, { method: 'md5', storedHash: `md5${'0'.repeat(32)}` }));
  t.type(wrongHash, LoginError);
  t.equal(wrongHash.code, '28P01', 'a wrong stored hash: invalid_password');

  await queryOnce(recorded.cluster.primary.connectionString(), `ALTER ROLE app PASSWORD 'changed'`);
  const changed = loginSecretOf(recorded.captured, await rolpasswordOf(recorded.cluster, 'app'));
  t.match(changed, { error: /does not answer the captured challenge/ }, 'a password changed since the login is noticed');
});

t.test('scram-sha-256', async (t) => {
  const recorded = await recordLogin(t, 'scram-sha-256');
  t.equal(recorded.captured.method, 'scram-sha-256');
  t.match(recorded.rolpassword, /^SCRAM-SHA-256\$4096:/, 'stored as a SCRAM verifier');
  const secret = secretOf(t, recorded);
  await logInToBothNodes(t, recorded, secret);
  if (secret.method !== 'scram-sha-256') return;

  const tamperedKey = Buffer.from(secret.clientKey);
  tamperedKey[0]! ^= 0x01;
  const wrongKey = await rejectionOf(logInDirectly(t, recorded.cluster.primary.port, recorded.startupPacket, { ...secret, clientKey: tamperedKey }));
  t.type(wrongKey, LoginError);
  t.equal(wrongKey.code, '28P01', 'a tampered ClientKey: the server refuses with invalid_password');
  t.match(wrongKey.message, /password authentication failed for user "app"/);

  const tamperedServerKey = Buffer.from(secret.serverKey);
  tamperedServerKey[0]! ^= 0x01;
  const wrongServer = await rejectionOf(logInDirectly(t, recorded.cluster.standby.port, recorded.startupPacket, { ...secret, serverKey: tamperedServerKey }));
  t.type(wrongServer, LoginError);
  t.match(wrongServer.message, /signature does not match/, 'a ServerKey that is not the server\'s: pgfloat refuses the server');
  t.equal(wrongServer.code, undefined);

  await queryOnce(recorded.cluster.primary.connectionString(), `ALTER ROLE app PASSWORD 'changed'`);
  const otherVerifier = await rolpasswordOf(recorded.cluster, 'app');
  t.not(otherVerifier, recorded.rolpassword);
  t.match(loginSecretOf(recorded.captured, otherVerifier), { error: /does not match the stored verifier/ }, 'a verifier the proof was not made against gives an error');
});
