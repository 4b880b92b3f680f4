// SCRAM-SHA-256 from keys, checked against RFC 7677's test vector; and the md5 answer from a stored hash.

import t from 'tap';
import { createHash } from 'node:crypto';
import { md5Answer } from '../../src/auth/md5';
import {
  authMessage,
  clientKeyFromProof,
  clientProof,
  decodeBase64,
  formatScramVerifier,
  keysFromPassword,
  parseScramVerifier,
  serverSignature,
} from '../../src/auth/scram';
import { RFC7677 } from '../harness/auth-fixtures';

const keys = keysFromPassword(RFC7677.password, RFC7677.salt, RFC7677.iterations);
const message = authMessage(RFC7677.clientFirstBare, RFC7677.serverFirst, RFC7677.clientFinalWithoutProof);
const vectorProof = Buffer.from(RFC7677.proof, 'base64');

t.test('the verifier derived from the password round-trips through the rolpassword text', async (t) => {
  const text = formatScramVerifier({ iterations: RFC7677.iterations, salt: RFC7677.salt, storedKey: keys.storedKey, serverKey: keys.serverKey });
  t.match(text, /^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
  const parsed = parseScramVerifier(text)!;
  t.equal(parsed.iterations, 4096);
  t.same(parsed.salt, RFC7677.salt);
  t.same(parsed.storedKey, keys.storedKey);
  t.same(parsed.serverKey, keys.serverKey);
});

t.test('a proof computed from the ClientKey is the RFC proof', async (t) => {
  t.equal(clientProof(keys.clientKey, message).toString('base64'), RFC7677.proof);
});

t.test('the RFC proof and the StoredKey give back the ClientKey', async (t) => {
  const recovered = clientKeyFromProof(keys.storedKey, message, vectorProof);
  t.ok(recovered, 'the proof matches the verifier');
  t.same(recovered, keys.clientKey);
});

t.test('the server signature is the RFC one', async (t) => {
  t.equal(`v=${serverSignature(keys.serverKey, message).toString('base64')}`, RFC7677.serverFinal);
});

t.test('a proof that does not belong to the verifier gives no ClientKey', async (t) => {
  const otherPassword = keysFromPassword('pencil2', RFC7677.salt, RFC7677.iterations);
  t.equal(clientKeyFromProof(otherPassword.storedKey, message, vectorProof), undefined, 'another verifier');
  const flipped = Buffer.from(vectorProof);
  flipped[0]! ^= 1;
  t.equal(clientKeyFromProof(keys.storedKey, message, flipped), undefined, 'a tampered proof');
  t.equal(clientKeyFromProof(keys.storedKey, `${message}x`, vectorProof), undefined, 'another exchange');
  t.equal(clientKeyFromProof(keys.storedKey, message, vectorProof.subarray(1)), undefined, 'a short proof');
});

t.test('verifiers that are not SCRAM-SHA-256 ones are refused', async (t) => {
  const good = formatScramVerifier({ iterations: 4096, salt: RFC7677.salt, storedKey: keys.storedKey, serverKey: keys.serverKey });
  for (const bad of [
    '',
    'md5571a417462efdd00f42fd639f463e597',
    good.replace('4096', '0'),
    good.replace('SCRAM-SHA-256', 'SCRAM-SHA-1'),
    good.slice(0, -2),
    good.replace(/:[^:]+$/, ':AAAA'),
  ]) {
    t.equal(parseScramVerifier(bad), undefined, JSON.stringify(bad));
  }
});

t.test('strict base64', async (t) => {
  t.same(decodeBase64('AAECAw=='), Buffer.from([0, 1, 2, 3]));
  t.same(decodeBase64(''), Buffer.alloc(0));
  t.equal(decodeBase64('AAE CAw=='), undefined);
  t.equal(decodeBase64('AAECAw='), undefined);
  t.equal(decodeBase64('AA,CAw=='), undefined);
});

t.test('md5: the stored hash answers a salt as a client with the password would', async (t) => {
  // md5sum of 'sekretpostgres', then of its hex followed by the bytes 01 02 03 04 (computed with coreutils).
  const stored = 'md5571a417462efdd00f42fd639f463e597';
  const salt = Buffer.from([1, 2, 3, 4]);
  t.equal(md5Answer(stored, salt), 'md584ba75aee006937624eb527de2f170b1');
  // node-postgres' own computation, from the password.
  const inner = createHash('md5').update('sekret' + 'postgres').digest('hex');
  t.equal(`md5${inner}`, stored);
  const pg = require('pg/lib/crypto/utils') as { postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string> };
  t.equal(md5Answer(stored, salt), await pg.postgresMd5PasswordHash('postgres', 'sekret', salt));
  t.not(md5Answer(stored, Buffer.from([1, 2, 3, 5])), md5Answer(stored, salt), 'another salt, another answer');
  t.throws(() => md5Answer('SCRAM-SHA-256$4096:...', salt), RangeError);
});
