// AuthCapture: what each kind of login leaves behind, from messages built byte by byte.

import t from 'tap';
import { AuthCapture, type CapturedAuth } from '../../src/auth/auth-capture';
import { errorResponse } from '../../src/protocol/error-response';
import { SqlState } from '../../src/protocol/codes';
import {
  authBody,
  authOk,
  cString,
  md5Request,
  P,
  R,
  RFC7677,
  saslContinue,
  saslFinal,
  saslInitialBody,
  saslRequest,
} from '../harness/auth-fixtures';

type Step = ['server' | 'client', number, Buffer];

function capture(steps: Step[]): AuthCapture {
  const auth = new AuthCapture();
  for (const [side, type, body] of steps) auth[side](type, body);
  return auth;
}

const N = 'N'.charCodeAt(0);
const V = 'v'.charCodeAt(0);
const Q = 'Q'.charCodeAt(0);

const scramSteps = (mechanism = 'SCRAM-SHA-256', clientFirst: string = RFC7677.clientFirst): Step[] => [
  ['server', R, saslRequest('SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256')],
  ['client', P, saslInitialBody(mechanism, clientFirst)],
  ['server', R, saslContinue(RFC7677.serverFirst)],
  ['client', P, Buffer.from(`${RFC7677.clientFinalWithoutProof},p=${RFC7677.proof}`)],
  ['server', R, saslFinal(RFC7677.serverFinal)],
  ['server', R, authOk()],
];

function unmovableWhy(result: CapturedAuth): string {
  if (result.method !== 'unmovable') throw new Error(`expected unmovable, got ${result.method}`);
  return result.why;
}

t.test('trust: AuthenticationOk with nothing asked before it', async (t) => {
  const auth = new AuthCapture();
  t.equal(auth.done, false);
  auth.server(V, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])); // NegotiateProtocolVersion changes nothing
  auth.server(R, authOk());
  t.equal(auth.done, true);
  t.same(auth.result(), { method: 'trust' });
});

t.test('md5: the salt and the answer are kept', async (t) => {
  const salt = Buffer.from([9, 8, 7, 6]);
  const auth = capture([
    ['server', R, md5Request(salt)],
    ['client', P, cString('md584ba75aee006937624eb527de2f170b1')],
    ['server', N, Buffer.from('SNOTICE\0Mhello\0\0')],
    ['server', R, authOk()],
  ]);
  t.equal(auth.done, true);
  const result = auth.result();
  t.equal(result.method, 'md5');
  t.same(result.method === 'md5' && result.challenge, { salt, response: 'md584ba75aee006937624eb527de2f170b1' });
});

t.test('SCRAM-SHA-256: the three messages the proof signs, and the proof', async (t) => {
  const auth = capture(scramSteps());
  t.equal(auth.done, true);
  const result = auth.result();
  t.equal(result.method, 'scram-sha-256');
  if (result.method !== 'scram-sha-256') return;
  t.equal(result.clientFirstBare, RFC7677.clientFirstBare, 'without the gs2 header');
  t.equal(result.serverFirst, RFC7677.serverFirst);
  t.equal(result.clientFinalWithoutProof, RFC7677.clientFinalWithoutProof);
  t.equal(result.clientProof.toString('base64'), RFC7677.proof);
});

t.test("the 'y' flag (client could bind, thought the server could not) is an ordinary login", async (t) => {
  const result = capture(scramSteps('SCRAM-SHA-256', 'y,,n=,r=rOprNGfwEbeRWgbNEkqO')).result();
  t.equal(result.method, 'scram-sha-256');
  t.equal(result.method === 'scram-sha-256' && result.clientFirstBare, 'n=,r=rOprNGfwEbeRWgbNEkqO');
});

t.test('channel binding is not movable, and says why', async (t) => {
  const plus = capture(scramSteps('SCRAM-SHA-256-PLUS', 'p=tls-server-end-point,,n=,r=rOprNGfwEbeRWgbNEkqO'));
  t.equal(plus.done, true, 'the login itself went through');
  t.match(unmovableWhy(plus.result()), /channel binding.*TLS channel/);
  const headerOnly = capture(scramSteps('SCRAM-SHA-256', 'p=tls-server-end-point,,n=,r=abc'));
  t.match(unmovableWhy(headerOnly.result()), /channel binding/, "a 'p=' gs2 header under the plain mechanism");
});

t.test('methods only the client can answer are not movable', async (t) => {
  const cleartext = capture([
    ['server', R, authBody(3)],
    ['client', P, cString('the password')],
    ['server', R, authOk()],
  ]);
  t.equal(cleartext.done, true);
  t.match(unmovableWhy(cleartext.result()), /cleartext password/);
  t.notMatch(JSON.stringify(cleartext.result()), /the password/, 'the cleartext password is not kept');
  t.match(unmovableWhy(capture([['server', R, authBody(7)], ['server', R, authOk()]]).result()), /GSSAPI/);
  t.match(unmovableWhy(capture([['server', R, authBody(9)], ['server', R, authOk()]]).result()), /SSPI/);
  t.match(unmovableWhy(capture([['server', R, authBody(42)], ['server', R, authOk()]]).result()), /request 42/);
});

t.test('anything out of order is not movable', async (t) => {
  const okTooEarly = capture(scramSteps().slice(0, 3).concat([['server', R, authOk()]]));
  t.equal(okTooEarly.done, true);
  t.match(unmovableWhy(okTooEarly.result()), /middle of the login/, 'AuthenticationOk before the SCRAM exchange ended');
  const otherMechanism = capture([
    ['server', R, saslRequest('SCRAM-SHA-256')],
    ['client', P, saslInitialBody('SCRAM-SHA-1', 'n,,n=,r=x')],
    ['server', R, authOk()],
  ]);
  t.match(unmovableWhy(otherMechanism.result()), /SCRAM-SHA-1/);
  const noProof = capture(scramSteps().map((s, i): Step => (i === 3 ? ['client', P, Buffer.from(RFC7677.clientFinalWithoutProof)] : s)));
  t.match(unmovableWhy(noProof.result()), /no proof/);
  const authzid = capture(scramSteps('SCRAM-SHA-256', 'n,a=admin,n=,r=x'));
  t.match(unmovableWhy(authzid.result()), /authorization identity/);
  const truncated = capture([['server', R, Buffer.from([0, 0])], ['server', R, authOk()]]);
  t.match(unmovableWhy(truncated.result()), /malformed/);
  const twoRequests = capture([['server', R, md5Request(Buffer.alloc(4))], ['server', R, saslRequest('SCRAM-SHA-256')], ['server', R, authOk()]]);
  t.match(unmovableWhy(twoRequests.result()), /SASL request while the login was at md5-requested/);
});

t.test('a query pipelined before AuthenticationOk does not disturb the capture', async (t) => {
  const steps = scramSteps();
  steps.splice(4, 0, ['client', Q, cString('select 1')]);
  t.equal(capture(steps).result().method, 'scram-sha-256');
});

t.test('a refused login is not done and is not movable', async (t) => {
  const auth = capture([
    ['server', R, md5Request(Buffer.alloc(4))],
    ['client', P, cString('md584ba75aee006937624eb527de2f170b1')],
    ['server', 'E'.charCodeAt(0), errorResponse({ code: SqlState.invalidAuthorizationSpecification, message: 'no' }).subarray(5)],
  ]);
  t.equal(auth.done, false);
  t.match(unmovableWhy(auth.result()), /refused/);
});

t.test('before AuthenticationOk the result says the login has not finished', async (t) => {
  const auth = capture(scramSteps().slice(0, 4));
  t.equal(auth.done, false);
  t.match(unmovableWhy(auth.result()), /not finished/);
});
