// parseStartupPacket: the first packet a client sends, in every shape and every malformation.

import t from 'tap';
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_PACKET_LENGTH,
  SSL_REQUEST_CODE,
  SqlState,
} from '../../src/protocol/codes';
import type { Refusal } from '../../src/protocol/refusal';
import { cancelRequest, parseStartupPacket, startupMessage, type StartupParseResult } from '../../src/protocol/startup';

/** Length + code + body, with the length field computed unless given. */
function packet(code: number, body: Buffer = Buffer.alloc(0), length?: number): Buffer {
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(length ?? out.length, 0);
  out.writeInt32BE(code, 4);
  body.copy(out, 8);
  return out;
}

function cstrings(...parts: string[]): Buffer {
  return Buffer.concat(parts.map((p) => Buffer.from(`${p}\0`, 'utf8')));
}

function version(major: number, minor: number): number {
  return ((major << 16) | minor) >>> 0;
}

function expectOk(t: tap.Test, result: StartupParseResult) {
  if (result.status !== 'ok') {
    t.fail(`expected ok, got ${JSON.stringify(result)}`);
    throw new Error('not ok');
  }
  return result;
}

function expectInvalid(t: tap.Test, result: StartupParseResult, code: string, messageMatch?: RegExp): Refusal | undefined {
  t.equal(result.status, 'invalid', `status of ${JSON.stringify(result)}`);
  if (result.status !== 'invalid') return undefined;
  t.equal(result.refusal.code, code, 'SQLSTATE');
  if (messageMatch) t.match(result.refusal.message, messageMatch, 'message');
  return result.refusal;
}

/** Refused as PostgreSQL refuses what it only logs: the client is closed without a word. */
function expectSilent(t: tap.Test, result: StartupParseResult, messageMatch: RegExp): void {
  t.equal(expectInvalid(t, result, SqlState.protocolViolation, messageMatch)?.silent, true, 'closed without a word');
}

t.test('StartupMessage: parameters, version and raw bytes', async (t) => {
  const params = { user: 'alice', database: 'sales', application_name: 'psql', options: '-c search_path=x' };
  const bytes = startupMessage(params);
  const result = expectOk(t, parseStartupPacket(bytes));
  t.equal(result.length, bytes.length);
  const p = result.packet;
  t.equal(p.kind, 'startup');
  if (p.kind !== 'startup') return;
  t.equal(p.majorVersion, 3);
  t.equal(p.minorVersion, 0);
  t.same(Object.fromEntries(p.parameters), params);
  t.same([...p.parameters.keys()], Object.keys(params), 'parameter order kept');
  t.ok(p.raw.equals(bytes), 'raw is the packet exactly as received');
  const copy = Buffer.from(bytes);
  bytes.fill(0xaa); // the caller reuses its read buffer
  t.ok(p.raw.equals(copy), 'raw is a copy, not a view of the input buffer');
});

t.test('StartupMessage: raw excludes bytes that follow the packet', async (t) => {
  const bytes = startupMessage({ user: 'bob' });
  const trailing = Buffer.from('Qselect 1\0');
  const result = expectOk(t, parseStartupPacket(Buffer.concat([bytes, trailing])));
  t.equal(result.length, bytes.length);
  if (result.packet.kind !== 'startup') return t.fail('not startup');
  t.ok(result.packet.raw.equals(bytes));
  t.same(Object.fromEntries(result.packet.parameters), { user: 'bob' });
});

t.test('StartupMessage: non-ASCII parameter values are decoded as UTF-8', async (t) => {
  const bytes = startupMessage({ user: 'jürgen', database: 'données', application_name: '日本語' });
  const result = expectOk(t, parseStartupPacket(bytes));
  if (result.packet.kind !== 'startup') return t.fail('not startup');
  t.equal(result.packet.parameters.get('user'), 'jürgen');
  t.equal(result.packet.parameters.get('database'), 'données');
  t.equal(result.packet.parameters.get('application_name'), '日本語');
});

t.test('StartupMessage: empty parameter value is allowed', async (t) => {
  const bytes = packet(version(3, 0), Buffer.concat([cstrings('user', 'u', 'options', ''), Buffer.from([0])]));
  const result = expectOk(t, parseStartupPacket(bytes));
  if (result.packet.kind !== 'startup') return t.fail('not startup');
  t.equal(result.packet.parameters.get('options'), '');
  t.equal(result.packet.parameters.get('user'), 'u');
});

t.test('StartupMessage: minor versions 3.0 and 3.2 accepted', async (t) => {
  for (const minor of [0, 2]) {
    const result = expectOk(t, parseStartupPacket(startupMessage({ user: 'u' }, minor)));
    if (result.packet.kind !== 'startup') return t.fail('not startup');
    t.equal(result.packet.majorVersion, 3, `3.${minor} major`);
    t.equal(result.packet.minorVersion, minor, `3.${minor} minor`);
  }
});

t.test('SSLRequest and GSSENCRequest', async (t) => {
  const ssl = expectOk(t, parseStartupPacket(packet(SSL_REQUEST_CODE)));
  t.same(ssl.packet, { kind: 'ssl-request' });
  t.equal(ssl.length, 8);
  const gss = expectOk(t, parseStartupPacket(packet(GSSENC_REQUEST_CODE)));
  t.same(gss.packet, { kind: 'gssenc-request' });
  t.equal(gss.length, 8);
  // A client that sends a StartupMessage right behind the SSLRequest (pipelined) must not confuse it.
  const pipelined = expectOk(t, parseStartupPacket(Buffer.concat([packet(SSL_REQUEST_CODE), startupMessage({ user: 'u' })])));
  t.same(pipelined.packet, { kind: 'ssl-request' });
  t.equal(pipelined.length, 8);
});

t.test('SSLRequest / GSSENCRequest with a body: read whole and taken, as PostgreSQL does', async (t) => {
  const ssl = expectOk(t, parseStartupPacket(packet(SSL_REQUEST_CODE, Buffer.alloc(4))));
  t.same(ssl.packet, { kind: 'ssl-request' });
  t.equal(ssl.length, 12);
  const gss = expectOk(t, parseStartupPacket(packet(GSSENC_REQUEST_CODE, Buffer.alloc(8))));
  t.same(gss.packet, { kind: 'gssenc-request' });
  t.equal(gss.length, 16);
});

t.test('CancelRequest with a 4-byte key (protocol 3.0)', async (t) => {
  const key = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
  const bytes = cancelRequest(12345, key);
  t.equal(bytes.length, 16);
  const result = expectOk(t, parseStartupPacket(bytes));
  t.equal(result.length, 16);
  t.equal(result.packet.kind, 'cancel-request');
  if (result.packet.kind !== 'cancel-request') return;
  t.equal(result.packet.processId, 12345);
  t.ok(result.packet.secretKey.equals(key), 'secret key bytes');
});

t.test('CancelRequest with a longer protocol-3.2 key', async (t) => {
  for (const size of [32, 256]) {
    const key = Buffer.alloc(size);
    for (let i = 0; i < size; i++) key[i] = (i * 7 + 3) & 0xff;
    const bytes = cancelRequest(0x7fffffff, key);
    const result = expectOk(t, parseStartupPacket(Buffer.concat([bytes, Buffer.from('junk')])));
    t.equal(result.length, 12 + size);
    if (result.packet.kind !== 'cancel-request') return t.fail('not cancel');
    t.equal(result.packet.processId, 0x7fffffff);
    t.equal(result.packet.secretKey.length, size, `key of ${size} bytes`);
    t.ok(result.packet.secretKey.equals(key), `key of ${size} bytes kept exactly`);
  }
});

t.test('CancelRequest with a key too short or too long is closed without a word', async (t) => {
  // 12 bytes: no key at all
  const noKey = Buffer.alloc(12);
  noKey.writeInt32BE(12, 0);
  noKey.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  noKey.writeInt32BE(1, 8);
  expectSilent(t, parseStartupPacket(noKey), /CancelRequest/);
  expectSilent(t, parseStartupPacket(cancelRequest(1, Buffer.alloc(257))), /CancelRequest/);
});

t.test('every strict prefix of a valid packet is incomplete', async (t) => {
  const valid = [
    startupMessage({ user: 'alice', database: 'db', application_name: 'app' }),
    startupMessage({ user: 'u' }, 2),
    packet(SSL_REQUEST_CODE),
    packet(GSSENC_REQUEST_CODE),
    cancelRequest(42, Buffer.from([1, 2, 3, 4])),
    cancelRequest(42, Buffer.alloc(64, 9)),
  ];
  for (const bytes of valid) {
    let incomplete = 0;
    for (let n = 0; n < bytes.length; n++) {
      const result = parseStartupPacket(bytes.subarray(0, n));
      if (result.status === 'incomplete') incomplete++;
      else t.fail(`prefix of ${n}/${bytes.length} bytes gave ${JSON.stringify(result)}`);
    }
    t.equal(incomplete, bytes.length, `all ${bytes.length} prefixes incomplete`);
    t.equal(parseStartupPacket(bytes).status, 'ok', 'the whole packet parses');
  }
});

t.test('length below 8 or above the limit is closed without a word as soon as the length is known', async (t) => {
  for (const length of [-1, 0, 4, 7, MAX_STARTUP_PACKET_LENGTH + 5, 0x7fffffff, -0x80000000]) {
    const header = Buffer.alloc(4);
    header.writeInt32BE(length, 0);
    // Only the 4 length bytes have arrived: refused before the rest is waited for.
    expectSilent(t, parseStartupPacket(header), new RegExp(`^invalid length of startup packet: ${length}$`));
  }
  // The limit counts what follows the length word, so 4 bytes more are accepted as a length (still incomplete with only the header).
  const header = Buffer.alloc(4);
  header.writeInt32BE(MAX_STARTUP_PACKET_LENGTH + 4, 0);
  t.equal(parseStartupPacket(header).status, 'incomplete');
  const exactly8 = Buffer.alloc(4);
  exactly8.writeInt32BE(8, 0);
  t.equal(parseStartupPacket(exactly8).status, 'incomplete');
});

t.test('a Terminate sent before the startup packet is named in the log line', async (t) => {
  expectSilent(t, parseStartupPacket(Buffer.from([0x58, 0, 0, 0, 4])), /^invalid length of startup packet: 1476395008 \(a Terminate message/);
});

t.test('a StartupMessage of exactly the maximum length is accepted', async (t) => {
  // 8 header bytes + "user\0" + "u\0" + "options\0" + value + "\0" + final "\0"
  const fixed = 8 + 5 + 2 + 8 + 1 + 1;
  const value = 'x'.repeat(MAX_STARTUP_PACKET_LENGTH + 4 - fixed);
  const bytes = packet(version(3, 0), Buffer.concat([cstrings('user', 'u', 'options', value), Buffer.from([0])]));
  t.equal(bytes.length, MAX_STARTUP_PACKET_LENGTH + 4);
  const result = expectOk(t, parseStartupPacket(bytes));
  if (result.packet.kind !== 'startup') return t.fail('not startup');
  t.equal(result.packet.parameters.get('options')!.length, value.length);
});

t.test('protocols other than 3.x are refused with 0A000, 1.x and 2.x in their own error format', async (t) => {
  const body = Buffer.concat([cstrings('user', 'u'), Buffer.from([0])]);
  for (const [major, minor, protocol2] of [[2, 0, true], [1, 0, true], [0, 5, true], [0, 0, undefined], [4, 0, undefined], [1234, 5681, undefined]] as const) {
    const refusal = expectInvalid(t, parseStartupPacket(packet(version(major, minor), body)), SqlState.featureNotSupported);
    t.equal(refusal?.message, `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`);
    t.equal(refusal?.protocol2, protocol2, `${major}.${minor}: ${protocol2 ? 'protocol 2' : 'protocol 3'} error format`);
  }
  t.equal(SqlState.featureNotSupported, '0A000');
});

t.test('missing or empty user is refused with 28000, after a NegotiateProtocolVersion where one is due', async (t) => {
  const missing = expectInvalid(t, parseStartupPacket(startupMessage({ database: 'db' })), SqlState.invalidAuthorizationSpecification);
  t.equal(missing?.message, 'no PostgreSQL user name specified in startup packet');
  t.equal(missing?.negotiate, undefined, 'protocol 3.0 without options: nothing to negotiate');
  expectInvalid(t, parseStartupPacket(startupMessage({})), '28000');
  expectInvalid(t, parseStartupPacket(startupMessage({ user: '' })), '28000');
  t.same(expectInvalid(t, parseStartupPacket(startupMessage({ database: 'db' }, 2)), '28000')?.negotiate, [], 'a newer minor version');
  t.same(expectInvalid(t, parseStartupPacket(startupMessage({ '_pq_.a': '1', '_pq_.b': '2' })), '28000')?.negotiate, ['_pq_.a', '_pq_.b'], 'protocol options');
});

t.test('_pq_. protocol options are not parameters', async (t) => {
  const result = expectOk(t, parseStartupPacket(startupMessage({ user: 'u', '_pq_.x': '1', application_name: 'a' })));
  if (result.packet.kind !== 'startup') return t.fail('not startup');
  t.same([...result.packet.parameters.keys()], ['user', 'application_name']);
});

t.test('replication: a boolean as PostgreSQL reads one, or "database"; anything else is 22023, before the layout and user checks', async (t) => {
  for (const value of ['true', 'T', 'tr', 'YES', 'y', 'on', 'oN', 'off', 'of', 'false', 'f', 'no', 'n', '1', '0', 'database']) {
    t.equal(parseStartupPacket(startupMessage({ user: 'u', replication: value })).status, 'ok', `replication=${value}`);
  }
  for (const value of ['', 'o', 'onn', 'truex', ' true', 'DATABASE', '2', '10']) {
    const refusal = expectInvalid(t, parseStartupPacket(startupMessage({ user: 'u', replication: value })), SqlState.invalidParameterValue);
    t.equal(refusal?.message, `invalid value for parameter "replication": "${value}"`);
    t.equal(refusal?.hint, 'Valid values are: "false", 0, "true", 1, "database".');
  }
  expectInvalid(t, parseStartupPacket(startupMessage({ replication: 'x' })), '22023', /replication/);
  expectInvalid(t, parseStartupPacket(packet(version(3, 0), Buffer.from('user\0u\0replication\0x'))), '22023', /"x"/);
});

t.test('layout errors are 08P01', async (t) => {
  // Missing final terminator: pairs end right at the packet end.
  expectInvalid(t, parseStartupPacket(packet(version(3, 0), cstrings('user', 'u'))), '08P01', /terminator/);
  // Data after the terminator.
  expectInvalid(
    t,
    parseStartupPacket(packet(version(3, 0), Buffer.concat([cstrings('user', 'u'), Buffer.from([0]), Buffer.from('x')]))),
    '08P01',
    /terminator/,
  );
  // PostgreSQL has one message for every layout fault.
  const layout = /^invalid startup packet layout: expected terminator as last byte$/;
  // Unterminated name: the NUL after the name lies outside the packet (in following bytes).
  const unterminatedName = Buffer.concat([packet(version(3, 0), Buffer.from('user')), Buffer.from([0, 0x75, 0, 0])]);
  expectInvalid(t, parseStartupPacket(unterminatedName), '08P01', layout);
  // ...and with no NUL anywhere after it.
  expectInvalid(t, parseStartupPacket(packet(version(3, 0), Buffer.from('user'))), '08P01', layout);
  // A name without a value.
  expectInvalid(t, parseStartupPacket(packet(version(3, 0), Buffer.from('user\0'))), '08P01', layout);
  // Unterminated value.
  expectInvalid(t, parseStartupPacket(packet(version(3, 0), Buffer.from('user\0bob'))), '08P01', layout);
  const unterminatedValue = Buffer.concat([packet(version(3, 0), Buffer.from('user\0bob')), Buffer.from([0, 0])]);
  expectInvalid(t, parseStartupPacket(unterminatedValue), '08P01', layout);
  // No parameters at all, not even the terminator.
  expectInvalid(t, parseStartupPacket(packet(version(3, 0))), '08P01', layout);
  // A layout fault is found before a missing user.
  expectInvalid(t, parseStartupPacket(packet(version(3, 0), Buffer.from('database\0d\0'))), '08P01', layout);
});

/** mulberry32: a tiny seeded PRNG, so any failure is reproducible. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('randomized: never throws, always one of three statuses', async (t) => {
  const random = mulberry32(0x5eed1234);
  const int = (n: number): number => Math.floor(random() * n);
  const seeds = [
    startupMessage({ user: 'alice', database: 'db', application_name: 'app' }),
    startupMessage({ user: 'u' }, 2),
    packet(SSL_REQUEST_CODE),
    packet(GSSENC_REQUEST_CODE),
    cancelRequest(7, Buffer.from([1, 2, 3, 4])),
    cancelRequest(7, Buffer.alloc(40, 1)),
  ];
  const interesting = [0, 0xff, 0x7f, 0x80, 3, 4, 8, 0x12, 0x34, 0x16, 0x2e, 0x2f, 0x30];
  const counts = { ok: 0, incomplete: 0, invalid: 0 };
  let failures = 0;
  const cases = 20_000;
  for (let i = 0; i < cases; i++) {
    let input: Buffer;
    if (i % 2 === 0) {
      input = Buffer.alloc(int(40));
      for (let j = 0; j < input.length; j++) input[j] = random() < 0.3 ? interesting[int(interesting.length)]! : int(256);
      // Often give random bytes a plausible length so they get past the first check.
      if (input.length >= 4 && random() < 0.7) input.writeInt32BE(8 + int(input.length), 0);
      if (input.length >= 8 && random() < 0.5) {
        input.writeInt32BE([SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE, version(3, 0), version(3, 2)][int(5)]!, 4);
      }
    } else {
      input = Buffer.from(seeds[int(seeds.length)]!);
      const mutations = 1 + int(4);
      for (let m = 0; m < mutations; m++) {
        const op = int(4);
        if (op === 0 && input.length > 0) input[int(input.length)] = random() < 0.5 ? 0 : int(256);
        else if (op === 1) input = input.subarray(0, int(input.length + 1));
        else if (op === 2) input = Buffer.concat([input, Buffer.from([int(256), 0, int(256)])]);
        else if (op === 3 && input.length >= 4) input.writeInt32BE(int(64) - 4, 0);
      }
    }
    let result: StartupParseResult;
    try {
      result = parseStartupPacket(input);
    } catch (err) {
      failures++;
      if (failures <= 5) t.fail(`threw on ${input.toString('hex')}: ${(err as Error).message}`);
      continue;
    }
    if (result.status === 'ok' || result.status === 'incomplete' || result.status === 'invalid') {
      counts[result.status]++;
      if (result.status === 'ok' && result.length > input.length) {
        failures++;
        if (failures <= 5) t.fail(`ok with length ${result.length} > input ${input.length}: ${input.toString('hex')}`);
      }
      if (result.status === 'invalid' && !/^[0-9A-Z]{5}$/.test(result.refusal.code)) {
        failures++;
        if (failures <= 5) t.fail(`invalid with a malformed SQLSTATE ${result.refusal.code}`);
      }
    } else {
      failures++;
      if (failures <= 5) t.fail(`unexpected status ${JSON.stringify(result)}`);
    }
  }
  t.equal(failures, 0, 'no throws and no unexpected results');
  t.equal(counts.ok + counts.incomplete + counts.invalid, cases, 'every case classified');
  // The generator must actually exercise all three outcomes, or the test proves little.
  t.ok(counts.ok > 100, `ok cases: ${counts.ok}`);
  t.ok(counts.incomplete > 100, `incomplete cases: ${counts.incomplete}`);
  t.ok(counts.invalid > 100, `invalid cases: ${counts.invalid}`);
});
