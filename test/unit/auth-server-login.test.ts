// ServerLogin against scripted servers: each method, every way the server's bytes can be split, and each way a login must fail.

import t from 'tap';
import { LoginError, ServerLogin, type LoggedIn } from '../../src/auth/server-login';
import type { LoginSecret } from '../../src/auth/login-secret';
import { authMessage, clientKeyFromProof, keysFromPassword, serverSignature } from '../../src/auth/scram';
import { startupMessage } from '../../src/protocol/startup';
import { authBody, authOk, md5Request, saslContinue, saslFinal, saslRequest, wire } from '../harness/auth-fixtures';
import { int32 } from '../harness/wire';
import { splitMessages } from '../harness/clients';

const startup = startupMessage({ user: 'app', database: 'db' });
const salt = Buffer.from('c2FsdHNhbHQ=', 'base64');
const keys = keysFromPassword('secret-password', salt, 4096);
const scramSecret: LoginSecret = { method: 'scram-sha-256', clientKey: keys.clientKey, serverKey: keys.serverKey };
const storedMd5 = 'md5571a417462efdd00f42fd639f463e597'; // md5('sekret' + 'postgres')

/** What a server sends once the user is in: the parameters, the cancel key, ReadyForQuery. */
const welcome = (key: Buffer = Buffer.from([0xca, 0xfe, 0xba, 0xbe])): Buffer =>
  wire(['R', authOk()], ['S', 'server_version\x0015.8\x00'], ['S', 'application_name\x00\x00'], ['K', Buffer.concat([int32(4242), key])], ['Z', 'I']);

/** A scripted server: given each batch of client messages (after the startup), what it answers. */
type Script = (clientMessages: Array<{ type: string; body: Buffer }>) => Buffer;

/**
 * Runs a login against `script`, handing the server's answers over in chunks of `chunkSize`
 * bytes, and returns the result (or throws what the login threw).
 */
function run(secret: LoginSecret, onStartup: Buffer, script: Script, chunkSize = Infinity): LoggedIn {
  const login = new ServerLogin(startup, secret);
  if (!login.start().equals(startup)) throw new Error('start() must send the startup packet as given');
  let reply = onStartup;
  for (let round = 0; round < 10; round++) {
    const sent: Buffer[] = [];
    for (let at = 0; at < reply.length; at += chunkSize) {
      const { send, done } = login.feed(reply.subarray(at, Math.min(reply.length, at + chunkSize)));
      sent.push(send);
      if (done) return done;
    }
    reply = script(splitMessages(Buffer.concat(sent)));
  }
  throw new Error('the login did not finish in 10 rounds');
}

/** A SCRAM server that holds `serverKeys`' verifier, checks the proof like PostgreSQL and signs with its ServerKey. */
function scramServer(serverKeys = keys, opts: { nonceSuffix?: string; signature?: (real: Buffer) => Buffer; afterFinal?: Buffer } = {}) {
  const seen = { proofAccepted: false, clientFirst: '', mechanism: '' };
  let clientFirstBare = '';
  let serverFirst = '';
  const script: Script = (messages) => {
    const [m] = messages;
    if (m === undefined || m.type !== 'p') throw new Error('expected one password message');
    if (serverFirst === '') {
      const nameEnd = m.body.indexOf(0);
      seen.mechanism = m.body.toString('utf8', 0, nameEnd);
      seen.clientFirst = m.body.toString('utf8', nameEnd + 5);
      clientFirstBare = seen.clientFirst.replace(/^n,,/, '');
      const clientNonce = /r=([^,]+)/.exec(clientFirstBare)![1]!;
      serverFirst = `r=${clientNonce}${opts.nonceSuffix ?? 'ServerPart'},s=${salt.toString('base64')},i=4096`;
      return wire(['R', saslContinue(serverFirst)]);
    }
    const clientFinal = m.body.toString('utf8');
    const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
    const message = authMessage(clientFirstBare, serverFirst, withoutProof);
    const proof = Buffer.from(clientFinal.slice(clientFinal.lastIndexOf(',p=') + 3), 'base64');
    if (clientKeyFromProof(serverKeys.storedKey, message, proof) === undefined) {
      return wire(['E', 'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "app"\0\0']);
    }
    seen.proofAccepted = true;
    const signature = (opts.signature ?? ((s) => s))(serverSignature(serverKeys.serverKey, message));
    return Buffer.concat([wire(['R', saslFinal(`v=${signature.toString('base64')}`)]), opts.afterFinal ?? welcome()]);
  };
  return { script, seen };
}

const noMoreRounds: Script = () => {
  throw new Error('the login should not have answered');
};

for (const chunkSize of [Infinity, 1, 7]) {
  const split = chunkSize === Infinity ? 'whole' : `${chunkSize}-byte chunks`;

  t.test(`trust (${split})`, async (t) => {
    const done = run({ method: 'trust' }, welcome(), noMoreRounds, chunkSize);
    t.equal(done.processId, 4242);
    t.same(done.secretKey, Buffer.from([0xca, 0xfe, 0xba, 0xbe]));
    t.same([...done.parameters], [['server_version', '15.8'], ['application_name', '']]);
    t.same(done.rest, Buffer.alloc(0));
  });

  t.test(`md5 (${split})`, async (t) => {
    const pg = require('pg/lib/crypto/utils') as { postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string> };
    const md5Salt = Buffer.from([0x10, 0x20, 0x30, 0x40]);
    const expected = await pg.postgresMd5PasswordHash('postgres', 'sekret', md5Salt);
    let answered = '';
    const done = run({ method: 'md5', storedHash: storedMd5 }, wire(['R', md5Request(md5Salt)]), ([m]) => {
      answered = m!.body.toString('utf8');
      return answered === `${expected}\0` ? welcome() : wire(['E', 'C28P01\0Mwrong\0\0']);
    }, chunkSize);
    t.equal(answered, `${expected}\0`, 'the answer a client with the password would give');
    t.equal(done.processId, 4242);
  });

  t.test(`SCRAM-SHA-256 (${split})`, async (t) => {
    const server = scramServer();
    const done = run(scramSecret, wire(['R', saslRequest('SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256')]), server.script, chunkSize);
    t.equal(server.seen.mechanism, 'SCRAM-SHA-256', 'never the channel-binding variant');
    t.match(server.seen.clientFirst, /^n,,n=,r=[A-Za-z0-9+/]{24}$/, 'no binding, no user name, a 24-character nonce');
    t.ok(server.seen.proofAccepted, 'the server accepted the proof');
    t.equal(done.processId, 4242);
  });
}

t.test('bytes after ReadyForQuery come back as rest, whether ReadyForQuery came whole or split', async (t) => {
  const after = Buffer.concat([wire(['N', 'SNOTICE\0Mlater\0\0']), Buffer.from('Z\0\0')]);
  const reply = Buffer.concat([welcome(), after]);
  t.same(run({ method: 'trust' }, reply, noMoreRounds).rest, after, 'one chunk');
  const login = new ServerLogin(startup, { method: 'trust' });
  login.start();
  const zEnd = reply.length - after.length;
  t.equal(login.feed(reply.subarray(0, zEnd - 2)).done, undefined, 'not done before the whole ReadyForQuery');
  t.same(login.feed(reply.subarray(zEnd - 2)).done?.rest, after, 'ReadyForQuery split across chunks');
  const unframeable = Buffer.from([0x44, 0, 0, 0, 1, 0x99]);
  t.same(run({ method: 'trust' }, Buffer.concat([welcome(), unframeable]), noMoreRounds).rest, unframeable, 'even bytes that cannot be framed: they are the caller\'s');
});

t.test('a protocol 3.2 cancel key (longer than 4 bytes) is kept whole', async (t) => {
  const key = Buffer.alloc(32, 7);
  t.same(run({ method: 'trust' }, welcome(key), noMoreRounds).secretKey, key);
});

function loginError(fn: () => unknown): LoginError {
  try {
    fn();
  } catch (err) {
    if (err instanceof LoginError) return err;
    throw err;
  }
  throw new Error('expected a LoginError');
}

t.test("the server's ErrorResponse: its message and SQLSTATE", async (t) => {
  const err = loginError(() => run(scramSecret, wire(['R', saslRequest('SCRAM-SHA-256')]), scramServer(keysFromPassword('other', salt, 4096)).script));
  t.equal(err.code, '28P01');
  t.equal(err.message, 'password authentication failed for user "app"');
});

t.test("a server that cannot sign as the role's verifier is refused", async (t) => {
  const flipped = scramServer(keys, { signature: (s) => Buffer.concat([Buffer.from([s[0]! ^ 1]), s.subarray(1)]) });
  const err = loginError(() => run(scramSecret, wire(['R', saslRequest('SCRAM-SHA-256')]), flipped.script));
  t.match(err.message, /signature does not match/);
  t.equal(err.code, undefined, 'no SQLSTATE: pgfloat gave up itself');
  t.ok(flipped.seen.proofAccepted, 'the server did accept the proof');
});

t.test('AuthenticationOk in place of SASL final is refused', async (t) => {
  const skipping = scramServer(keys, { signature: () => Buffer.alloc(0) });
  const script: Script = (m) => {
    const reply = skipping.script(m);
    return reply[0] === 0x52 && reply.readInt32BE(5) === 12 ? welcome() : reply;
  };
  t.match(loginError(() => run(scramSecret, wire(['R', saslRequest('SCRAM-SHA-256')]), script)).message, /AuthenticationOk before the scram-sha-256 exchange finished/);
});

t.test('a server nonce that does not extend the client nonce is refused', async (t) => {
  const script: Script = () => wire(['R', saslContinue('r=someoneElsesNonce,s=c2FsdA==,i=4096')]);
  t.match(loginError(() => run(scramSecret, wire(['R', saslRequest('SCRAM-SHA-256')]), script)).message, /nonce/);
  t.match(loginError(() => run(scramSecret, wire(['R', saslRequest('SCRAM-SHA-256')]), scramServer(keys, { nonceSuffix: '' }).script)).message, /nonce/, 'nor one that adds nothing');
});

t.test('a method the secret cannot answer', async (t) => {
  t.match(loginError(() => run(scramSecret, wire(['R', md5Request(Buffer.alloc(4))]), noMoreRounds)).message, /asks for md5 but the secret is for scram-sha-256/);
  t.match(loginError(() => run({ method: 'md5', storedHash: storedMd5 }, wire(['R', saslRequest('SCRAM-SHA-256')]), noMoreRounds)).message, /asks for SASL but the secret is for md5/);
  t.match(loginError(() => run({ method: 'trust' }, wire(['R', authBody(3)]), noMoreRounds)).message, /cleartext password/);
  t.match(loginError(() => run(scramSecret, wire(['R', saslRequest('SCRAM-SHA-256-PLUS')]), noMoreRounds)).message, /not SCRAM-SHA-256/);
});

t.test('malformed bytes', async (t) => {
  t.match(loginError(() => run({ method: 'trust' }, Buffer.from([0x52, 0, 0, 0, 2]), noMoreRounds)).message, /malformed bytes.*invalid message length/);
  t.match(loginError(() => run({ method: 'trust' }, wire(['R', Buffer.from([0, 0])]), noMoreRounds)).message, /malformed message/);
  t.match(loginError(() => run({ method: 'trust' }, wire(['D', 'x']), noMoreRounds)).message, /'D' before AuthenticationOk/);
  t.match(loginError(() => run({ method: 'trust' }, wire(['R', authOk()], ['Z', 'I']), noMoreRounds)).message, /without BackendKeyData/);
});

t.test('misuse', async (t) => {
  t.throws(() => new ServerLogin(Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), { method: 'trust' }), LoginError, 'an SSLRequest is not a startup packet');
  t.throws(() => new ServerLogin(startup.subarray(0, startup.length - 1), { method: 'trust' }), LoginError, 'nor a truncated one');
  const login = new ServerLogin(startup, { method: 'trust' });
  t.throws(() => login.feed(welcome()), /before start/);
  login.start();
  t.ok(login.feed(welcome()).done);
  t.throws(() => login.feed(Buffer.from('x')), /finished/);
  const refused = new ServerLogin(startup, { method: 'trust' });
  refused.start();
  t.throws(() => refused.feed(wire(['E', 'C28000\0Mno\0\0'])), { code: '28000' });
  t.throws(() => refused.feed(welcome()), /already failed/, 'nothing is read after a failure');
});
