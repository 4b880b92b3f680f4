// The channel-binding bridge on a scripted SCRAM exchange: what the client and the server each see,
// that both proofs check out for their own view, and the same bytes however the streams are split.

import t from 'tap';
import { authenticationSasl, authenticationSaslFinal, parseAuthenticationRequest, saslInitialResponse, saslResponse } from '../../src/auth/auth-messages';
import { ChannelBindingBridge } from '../../src/auth/channel-binding';
import { authMessage, clientKeyFromProof, clientProof, formatScramVerifier, keysFromPassword, sameBytes, serverSignature } from '../../src/auth/scram';
import { AuthBridge } from '../../src/proxy/auth-bridge';
import type { ClientToServerPump, ServerToClientPump } from '../../src/proxy/relay';

const salt = Buffer.from('0123456789abcdef');
const keys = keysFromPassword('sekret', salt, 4096);
const verifier = formatScramVerifier({ iterations: 4096, salt, storedKey: keys.storedKey, serverKey: keys.serverKey });
const clientFirstBare = 'n=,r=clientnonce';
const serverFirst = `r=clientnonceservernonce,s=${salt.toString('base64')},i=4096`;
const clientView = authMessage(clientFirstBare, serverFirst, 'c=eSws,r=clientnonceservernonce');
const serverView = authMessage(clientFirstBare, serverFirst, 'c=biws,r=clientnonceservernonce');

function saslContinue(text: string): Buffer {
  const body = Buffer.alloc(4);
  body.writeInt32BE(11, 0);
  const message = Buffer.concat([Buffer.from('R'), Buffer.alloc(4), body, Buffer.from(text)]);
  message.writeInt32BE(message.length - 1, 1);
  return message;
}

const AUTH_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
const READY = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);

/** The four messages each way of a login by a client that could bind, with the given password's keys. */
function exchange(clientKey: Buffer): { server: Buffer[]; client: Buffer[] } {
  const proof = clientProof(clientKey, clientView).toString('base64');
  return {
    server: [
      authenticationSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']),
      saslContinue(serverFirst),
      authenticationSaslFinal(Buffer.from(`v=${serverSignature(keys.serverKey, serverView).toString('base64')}`)),
      Buffer.concat([AUTH_OK, READY]),
    ],
    client: [saslInitialResponse('SCRAM-SHA-256', Buffer.from(`y,,${clientFirstBare}`)), saslResponse(Buffer.from(`c=eSws,r=clientnonceservernonce,p=${proof}`))],
  };
}

t.test('the bridge: the client is not offered PLUS, the server sees "n", and each side gets a proof for its own view', async (t) => {
  const bridge = new ChannelBindingBridge(async () => verifier);
  const { server, client } = exchange(keys.clientKey);
  const offer = parseAuthenticationRequest(bridge.server(server[0]!).subarray(5));
  t.same(offer, { kind: 'sasl', mechanisms: ['SCRAM-SHA-256'] }, 'SCRAM-SHA-256-PLUS is taken out of the offer');
  t.equal((bridge.client(client[0]!) as Buffer).subarray(5).toString('latin1'), `SCRAM-SHA-256\0\0\0\0\x13n,,${clientFirstBare}`, 'the server is told the client does not bind');
  t.same(bridge.server(server[1]!), server[1], 'server-first passes as it is');
  const final = (await bridge.client(client[1]!)).subarray(5).toString('utf8');
  t.match(final, /^c=biws,r=clientnonceservernonce,p=/);
  const proof = Buffer.from(final.slice(final.indexOf(',p=') + 3), 'base64');
  t.same(clientKeyFromProof(keys.storedKey, serverView, proof), keys.clientKey, "the server's proof is the client's key signing the server's view");
  const v = parseAuthenticationRequest(bridge.server(server[2]!).subarray(5));
  t.equal(v.kind, 'sasl-final');
  const signature = Buffer.from((v as { data: Buffer }).data.toString().slice(2), 'base64');
  t.ok(sameBytes(signature, serverSignature(keys.serverKey, clientView)), "the client gets the server's signature of its own view");
  t.ok(bridge.finished);
});

t.test('a wrong password stays wrong, and a forged server signature is not vouched for', async (t) => {
  const bridge = new ChannelBindingBridge(async () => verifier);
  const wrongKey = keysFromPassword('wrong', salt, 4096).clientKey;
  const { server, client } = exchange(wrongKey);
  bridge.server(server[0]!);
  bridge.client(client[0]!);
  bridge.server(server[1]!);
  const final = (await bridge.client(client[1]!)).subarray(5).toString('utf8');
  t.equal(final.slice(final.indexOf(',p=') + 3), clientProof(wrongKey, clientView).toString('base64'), "the client's own proof goes on, for the server to refuse");
  const forged = authenticationSaslFinal(Buffer.from(`v=${Buffer.alloc(32).toString('base64')}`));
  t.same(bridge.server(forged), forged, 'a signature that does not check out reaches the client as it came');
});

t.test('a client that does not bind, or a server that offers no PLUS, is left alone', async (t) => {
  const plain = new ChannelBindingBridge(async () => verifier);
  const offer = authenticationSasl(['SCRAM-SHA-256']);
  t.same(plain.server(offer), offer);
  t.ok(plain.finished, 'nothing to do without PLUS on offer');
  const notBinding = new ChannelBindingBridge(async () => verifier);
  notBinding.server(authenticationSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']));
  const first = saslInitialResponse('SCRAM-SHA-256', Buffer.from(`n,,${clientFirstBare}`));
  t.same(notBinding.client(first), first, '"n" passes as it is');
  t.ok(notBinding.finished);
});

t.test('without a verifier the login is refused with the reason', async (t) => {
  const bridge = new ChannelBindingBridge(async () => null);
  const { server, client } = exchange(keys.clientKey);
  bridge.server(server[0]!);
  bridge.client(client[0]!);
  bridge.server(server[1]!);
  await t.rejects(Promise.resolve(bridge.client(client[1]!)), /gave no SCRAM verifier/);
});

interface FakePump {
  intercept: ((chunk: Buffer) => void) | undefined;
  sent: Buffer[];
  send(bytes: Buffer): void;
}

function fakePump(): FakePump {
  const pump: FakePump = { intercept: undefined, sent: [], send: (bytes) => void pump.sent.push(Buffer.from(bytes)) };
  return pump;
}

/** Feeds `bytes` in pieces cut at `cuts`, each piece from a reused buffer as the relay's reader gives it. */
function feed(pump: FakePump, bytes: Buffer, cuts: number[]): void {
  let from = 0;
  const scratch = Buffer.alloc(bytes.length);
  for (const to of [...cuts, bytes.length]) {
    if (to <= from) continue;
    bytes.copy(scratch, 0, from, to);
    (pump.intercept ?? pump.send)(scratch.subarray(0, to - from));
    scratch.fill(0);
    from = to;
  }
}

t.test('the relay gives the same bytes however the streams are split, then steps aside', async (t) => {
  const expected = async (): Promise<{ toClient: Buffer; toServer: Buffer }> => {
    const bridge = new ChannelBindingBridge(async () => verifier);
    const { server, client } = exchange(keys.clientKey);
    const toClient = [bridge.server(server[0]!)];
    const toServer = [await bridge.client(client[0]!)];
    toClient.push(bridge.server(server[1]!));
    toServer.push(await bridge.client(client[1]!));
    toClient.push(bridge.server(server[2]!), server[3]!);
    return { toClient: Buffer.concat(toClient), toServer: Buffer.concat(toServer) };
  };
  const want = await expected();
  const { server, client } = exchange(keys.clientKey);
  const serverBytes = [Buffer.concat(server.slice(0, 1)), server[1]!, Buffer.concat(server.slice(2))];
  let runs = 0;
  for (let cut = 1; cut < 60; cut++) {
    const clientPump = fakePump();
    const serverPump = fakePump();
    AuthBridge.install(async () => verifier, { clientPump: clientPump as unknown as ClientToServerPump, serverPump: serverPump as unknown as ServerToClientPump, refuse: (err) => t.fail(err.message) });
    // The exchange in its order: each side speaks once the other's message is through.
    feed(serverPump, serverBytes[0]!, [cut % serverBytes[0]!.length]);
    feed(clientPump, client[0]!, [cut % client[0]!.length]);
    feed(serverPump, serverBytes[1]!, [cut % serverBytes[1]!.length]);
    feed(clientPump, client[1]!, [cut % client[1]!.length, (cut * 7) % client[1]!.length]);
    await new Promise((resolve) => setImmediate(resolve));
    feed(serverPump, serverBytes[2]!, [cut % serverBytes[2]!.length]);
    if (!Buffer.concat(serverPump.sent).equals(want.toClient) || !Buffer.concat(clientPump.sent).equals(want.toServer)) {
      t.fail(`split at ${cut}: different bytes`);
      return;
    }
    if (serverPump.intercept !== undefined || clientPump.intercept !== undefined) {
      t.fail(`split at ${cut}: still intercepting after AuthenticationOk`);
      return;
    }
    runs++;
  }
  t.equal(runs, 59, 'every split gives the bytes of the unsplit exchange, and the pumps relay directly afterwards');
});
