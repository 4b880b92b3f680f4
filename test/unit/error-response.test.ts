// errorResponse(): what pgfloat writes must read back, field by field, with pg's own protocol parser.

import t from 'tap';
import { Parser } from 'pg-protocol/dist/parser';
import type { BackendMessage, DatabaseError } from 'pg-protocol/dist/messages';
import { SqlState } from '../../src/protocol/codes';
import { errorResponse, GSSENC_NOT_SUPPORTED, SSL_ACCEPTED, SSL_NOT_SUPPORTED } from '../../src/protocol/error-response';

function parseAll(bytes: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  new Parser().parse(bytes, (msg) => out.push(msg));
  return out;
}

/** The raw fields, in order, read without pg-protocol (it drops 'V'). */
function rawFields(t: tap.Test, bytes: Buffer): Array<[string, string]> {
  const fields: Array<[string, string]> = [];
  let offset = 5;
  while (bytes[offset] !== 0) {
    const type = String.fromCharCode(bytes[offset]!);
    const end = bytes.indexOf(0, offset + 1);
    fields.push([type, bytes.toString('utf8', offset + 1, end)]);
    offset = end + 1;
  }
  t.equal(offset, bytes.length - 1, 'the terminating zero is the last byte');
  return fields;
}

t.test('all fields, FATAL by default', async (t) => {
  const bytes = errorResponse({
    code: SqlState.cannotConnectNow,
    message: 'no verified primary available',
    detail: 'nodes claiming primary: n1, n2',
    hint: 'check the cluster',
  });
  t.equal(bytes[0], 0x45, "type 'E'");
  t.equal(bytes.readInt32BE(1), bytes.length - 1, 'length field counts everything but the type byte');
  const msgs = parseAll(bytes);
  t.equal(msgs.length, 1);
  const err = msgs[0] as DatabaseError;
  t.equal(err.name, 'error');
  t.equal(err.severity, 'FATAL');
  t.equal(err.code, '57P03');
  t.equal(err.message, 'no verified primary available');
  t.equal(err.detail, 'nodes claiming primary: n1, n2');
  t.equal(err.hint, 'check the cluster');
  t.same(rawFields(t, bytes), [
    ['S', 'FATAL'],
    ['V', 'FATAL'],
    ['C', '57P03'],
    ['M', 'no verified primary available'],
    ['D', 'nodes claiming primary: n1, n2'],
    ['H', 'check the cluster'],
  ]);
});

t.test('non-ASCII text survives', async (t) => {
  const message = 'connexion refusée: «n1» est indisponible — 主サーバーなし 🐘';
  const detail = 'Größe überschritten: 10 000 octets';
  const hint = 'Попробуйте ещё раз';
  const bytes = errorResponse({ code: SqlState.protocolViolation, message, detail, hint });
  t.equal(bytes.readInt32BE(1), bytes.length - 1, 'length counts UTF-8 bytes, not characters');
  const err = parseAll(bytes)[0] as DatabaseError;
  t.equal(err.severity, 'FATAL');
  t.equal(err.code, '08P01');
  t.equal(err.message, message);
  t.equal(err.detail, detail);
  t.equal(err.hint, hint);
});

t.test('optional fields left out, ERROR severity', async (t) => {
  const bytes = errorResponse({ severity: 'ERROR', code: SqlState.featureNotSupported, message: 'nope' });
  const err = parseAll(bytes)[0] as DatabaseError;
  t.equal(err.severity, 'ERROR');
  t.equal(err.code, '0A000');
  t.equal(err.message, 'nope');
  t.equal(err.detail, undefined);
  t.equal(err.hint, undefined);
  t.same(rawFields(t, bytes), [
    ['S', 'ERROR'],
    ['V', 'ERROR'],
    ['C', '0A000'],
    ['M', 'nope'],
  ]);
});

t.test('two responses back to back frame correctly', async (t) => {
  const a = errorResponse({ code: SqlState.tooManyConnections, message: 'too many' });
  const b = errorResponse({ code: SqlState.adminShutdown, message: 'shutting down', detail: 'é' });
  const msgs = parseAll(Buffer.concat([a, b])) as DatabaseError[];
  t.same(
    msgs.map((m) => [m.code, m.message, m.detail]),
    [
      ['53300', 'too many', undefined],
      ['57P01', 'shutting down', 'é'],
    ],
  );
});

t.test('empty message and detail', async (t) => {
  const bytes = errorResponse({ code: SqlState.connectionFailure, message: '', detail: '' });
  const err = parseAll(bytes)[0] as DatabaseError;
  t.equal(err.code, '08006');
  t.equal(err.message, '');
  t.equal(err.detail, '');
});

t.test('one-byte SSL/GSS answers', async (t) => {
  t.equal(SSL_NOT_SUPPORTED.toString('latin1'), 'N');
  t.equal(SSL_ACCEPTED.toString('latin1'), 'S');
  t.equal(GSSENC_NOT_SUPPORTED.toString('latin1'), 'N');
});
