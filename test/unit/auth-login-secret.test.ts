// loginSecretOf: the secret comes out only when the stored password is the one the captured login was checked against.

import t from 'tap';
import type { CapturedAuth } from '../../src/auth/auth-capture';
import { loginSecretOf } from '../../src/auth/login-secret';
import { md5Answer } from '../../src/auth/md5';
import { formatScramVerifier, keysFromPassword } from '../../src/auth/scram';
import { RFC7677 } from '../harness/auth-fixtures';

const keys = keysFromPassword(RFC7677.password, RFC7677.salt, RFC7677.iterations);
const verifier = formatScramVerifier({ iterations: RFC7677.iterations, salt: RFC7677.salt, storedKey: keys.storedKey, serverKey: keys.serverKey });
const capturedScram: CapturedAuth = {
  method: 'scram-sha-256',
  clientFirstBare: RFC7677.clientFirstBare,
  serverFirst: RFC7677.serverFirst,
  clientFinalWithoutProof: RFC7677.clientFinalWithoutProof,
  clientProof: Buffer.from(RFC7677.proof, 'base64'),
};
const storedMd5 = 'md5571a417462efdd00f42fd639f463e597';
const salt = Buffer.from([1, 2, 3, 4]);

function errorOf(value: ReturnType<typeof loginSecretOf>): string {
  if (!('error' in value)) throw new Error(`expected an error, got a ${value.method} secret`);
  return value.error;
}

t.test('trust needs nothing, whatever is stored', async (t) => {
  t.same(loginSecretOf({ method: 'trust' }, null), { method: 'trust' });
  t.same(loginSecretOf({ method: 'trust' }, verifier), { method: 'trust' });
});

t.test('SCRAM: the ClientKey out of the proof, and the ServerKey from the verifier', async (t) => {
  const secret = loginSecretOf(capturedScram, verifier);
  t.same(secret, { method: 'scram-sha-256', clientKey: keys.clientKey, serverKey: keys.serverKey });
});

t.test('SCRAM: a verifier the proof was not made against gives an error', async (t) => {
  const other = keysFromPassword('not-pencil', RFC7677.salt, RFC7677.iterations);
  const otherVerifier = formatScramVerifier({ iterations: RFC7677.iterations, salt: RFC7677.salt, storedKey: other.storedKey, serverKey: other.serverKey });
  t.match(errorOf(loginSecretOf(capturedScram, otherVerifier)), /does not match the stored verifier/);
  t.match(errorOf(loginSecretOf(capturedScram, null)), /no stored password/);
  t.match(errorOf(loginSecretOf(capturedScram, storedMd5)), /stored password is an md5 hash/);
  t.match(errorOf(loginSecretOf(capturedScram, 'SCRAM-SHA-256$4096:abc')), /malformed/);
});

t.test('md5: the stored hash, once it answers the captured challenge', async (t) => {
  const response = md5Answer(storedMd5, salt);
  t.same(loginSecretOf({ method: 'md5', challenge: { salt, response } }, storedMd5), { method: 'md5', storedHash: storedMd5 });
  t.same(loginSecretOf({ method: 'md5' }, storedMd5), { method: 'md5', storedHash: storedMd5 }, 'a capture without the challenge is taken as is');
  const otherHash = 'md5' + 'f'.repeat(32);
  t.match(errorOf(loginSecretOf({ method: 'md5', challenge: { salt, response } }, otherHash)), /does not answer the captured challenge/);
  t.match(errorOf(loginSecretOf({ method: 'md5' }, verifier)), /stored password is a SCRAM-SHA-256 verifier/);
  t.match(errorOf(loginSecretOf({ method: 'md5' }, null)), /no stored password/);
  t.match(errorOf(loginSecretOf({ method: 'md5' }, 'hunter2')), /neither/);
});

t.test('an unmovable login stays so, with its reason', async (t) => {
  t.same(loginSecretOf({ method: 'unmovable', why: 'GSSAPI' }, verifier), { error: 'the login cannot be repeated: GSSAPI' });
});

t.test('no error message shows any of the stored password', async (t) => {
  const errors = [loginSecretOf(capturedScram, 'SCRAM-SHA-256$4096:abc'), loginSecretOf({ method: 'md5' }, 'hunter2'), loginSecretOf(capturedScram, storedMd5)];
  for (const e of errors) t.notMatch(errorOf(e), /abc|hunter2|571a4174/);
});
