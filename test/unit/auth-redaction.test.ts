// Login secrets never show in util.inspect, JSON or log lines, whatever holds them.

import t from 'tap';
import { inspect } from 'node:util';
import { Writable } from 'node:stream';
import { AuthCapture } from '../../src/auth/auth-capture';
import { loginSecretOf, redactedLoginSecret, type LoginSecret } from '../../src/auth/login-secret';
import { md5Answer } from '../../src/auth/md5';
import { formatScramVerifier, keysFromPassword } from '../../src/auth/scram';
import { LoginError, ServerLogin } from '../../src/auth/server-login';
import { startupMessage } from '../../src/protocol/startup';
import { createLogger } from '../../src/log';
import { authOk, cString, md5Request, P, R, RFC7677, saslContinue, saslFinal, saslInitialBody, saslRequest, wire } from '../harness/auth-fixtures';

const keys = keysFromPassword(RFC7677.password, RFC7677.salt, RFC7677.iterations);
const verifier = formatScramVerifier({ iterations: RFC7677.iterations, salt: RFC7677.salt, storedKey: keys.storedKey, serverKey: keys.serverKey });
const proof = Buffer.from(RFC7677.proof, 'base64');
const storedMd5 = 'md5571a417462efdd00f42fd639f463e597';
const md5Response = md5Answer(storedMd5, Buffer.from([1, 2, 3, 4]));

/** Every way a secret's bytes could be written out: hex (plain or as Buffer inspect shows it), base64, JSON's byte array. */
function forms(secret: Buffer | string): string[] {
  if (typeof secret === 'string') return [secret, secret.slice(3)];
  const hex = secret.toString('hex');
  return [hex, `${secret[0]}, ${secret[1]}, ${secret[2]}`, `"0":${secret[0]},"1":${secret[1]}`, hex.slice(0, 16).replace(/(..)(?!$)/g, '$1 '), secret.toString('base64'), secret.toString('base64').slice(0, 12), `[${[...secret.subarray(0, 4)].join(',')}`];
}
const allSecrets = [...forms(keys.clientKey), ...forms(keys.serverKey), ...forms(proof), ...forms(storedMd5), ...forms(md5Response)];

function assertNoSecret(t: tap.Test, text: string, what: string): void {
  const found = allSecrets.filter((form) => text.includes(form));
  t.same(found, [], `${what} shows no secret`);
}

function scramCapture(): AuthCapture {
  const auth = new AuthCapture();
  auth.server(R, saslRequest('SCRAM-SHA-256'));
  auth.client(P, saslInitialBody('SCRAM-SHA-256', RFC7677.clientFirst));
  auth.server(R, saslContinue(RFC7677.serverFirst));
  auth.client(P, Buffer.from(`${RFC7677.clientFinalWithoutProof},p=${RFC7677.proof}`));
  auth.server(R, saslFinal(RFC7677.serverFinal));
  auth.server(R, authOk());
  return auth;
}

function md5Capture(): AuthCapture {
  const auth = new AuthCapture();
  auth.server(R, md5Request(Buffer.from([1, 2, 3, 4])));
  auth.client(P, cString(md5Response));
  auth.server(R, authOk());
  return auth;
}

function secretOf(auth: AuthCapture, rolpassword: string): LoginSecret {
  const secret = loginSecretOf(auth.result(), rolpassword);
  if ('error' in secret) throw new Error(secret.error);
  return secret;
}

const scramSecret = secretOf(scramCapture(), verifier);
const md5Secret = secretOf(md5Capture(), storedMd5);
const login = new ServerLogin(startupMessage({ user: 'user' }), scramSecret);

const holders: Record<string, unknown> = {
  'SCRAM secret': scramSecret,
  'md5 secret': md5Secret,
  'SCRAM capture result': scramCapture().result(),
  'md5 capture result': md5Capture().result(),
  'AuthCapture (SCRAM)': scramCapture(),
  'AuthCapture (md5)': md5Capture(),
  ServerLogin: login,
  'a log context holding them all': { session: { secret: scramSecret, md5: md5Secret, capture: scramCapture(), login } },
};

t.test('the fixtures hold the secrets the checks look for', async (t) => {
  // Without this, a check that looks for the wrong bytes would pass forever.
  const raw = JSON.stringify({ k: scramSecret.method === 'scram-sha-256' && scramSecret.clientKey.toString('hex') });
  t.ok(raw.includes(keys.clientKey.toString('hex')));
  t.ok(inspect({ ...scramSecret }).includes(keys.clientKey.toString('hex').slice(0, 16).replace(/(..)(?!$)/g, '$1 ')), 'a plain copy is not redacted: the check would see it');
  t.ok(JSON.stringify({ ...md5Secret }).includes(storedMd5));
});

t.test('util.inspect', async (t) => {
  for (const [what, value] of Object.entries(holders)) {
    const text = inspect(value, { depth: 10 });
    assertNoSecret(t, text, what);
    t.match(text, /redacted|phase/, `${what} still says what it is: ${text.slice(0, 80)}`);
  }
});

t.test('JSON', async (t) => {
  for (const [what, value] of Object.entries(holders)) assertNoSecret(t, JSON.stringify(value), what);
  t.same(JSON.parse(JSON.stringify(scramSecret)), { method: 'scram-sha-256', clientKey: '[redacted]', serverKey: '[redacted]' });
  t.same(JSON.parse(JSON.stringify(md5Capture())), { phase: 'done', method: 'md5' });
});

t.test("pgfloat's logger", async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = createLogger('debug', sink);
  log.info({ holders }, 'everything');
  log.info({ clientKey: keys.clientKey.toString('base64'), session: { storedHash: storedMd5 } }, 'a secret copied out into a field');
  t.equal(lines.length, 2);
  assertNoSecret(t, lines.join(''), 'the log');
});

t.test('a secret sent to another thread arrives bare, and is redacted again there', async (t) => {
  const cloned = structuredClone(scramSecret);
  t.same(cloned, { method: 'scram-sha-256', clientKey: keys.clientKey, serverKey: keys.serverKey }, 'the fields survive the clone');
  // A clone's Buffers are Uint8Arrays, which JSON writes as index-keyed objects.
  t.ok(JSON.stringify(cloned).includes(`"0":${keys.clientKey[0]},"1":${keys.clientKey[1]}`), 'the clone is bare: this is what redactedLoginSecret is for');
  const again = redactedLoginSecret(cloned);
  assertNoSecret(t, inspect(again) + JSON.stringify(again), 'the secret redacted again');
  t.same(again, { method: 'scram-sha-256', clientKey: keys.clientKey, serverKey: keys.serverKey }, 'same fields');
  t.ok(again.method === 'scram-sha-256' && Buffer.isBuffer(again.clientKey), 'Buffers again');
  t.same(redactedLoginSecret(structuredClone(md5Secret)), { method: 'md5', storedHash: storedMd5 });
});

t.test('LoginError', async (t) => {
  const failing = new ServerLogin(startupMessage({ user: 'user' }), scramSecret);
  failing.start();
  failing.feed(wire(['R', saslRequest('SCRAM-SHA-256')]));
  let err: LoginError | undefined;
  try {
    failing.feed(wire(['R', saslContinue('r=not-our-nonce,s=c2FsdA==,i=4096')]));
  } catch (e) {
    err = e as LoginError;
  }
  t.type(err, LoginError);
  assertNoSecret(t, `${err!.message}\n${err!.stack}\n${inspect(err)}\n${JSON.stringify(err)}`, 'the error');
});
