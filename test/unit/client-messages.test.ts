// queryMessage() and terminateMessage(): the same bytes as pg's own serializer, and framed as the scanner reads them.

import t from 'tap';
import { serialize } from 'pg-protocol';
import { queryMessage, terminateMessage } from '../../src/protocol/client-messages';
import { MessageScanner, MessageType } from '../../src/protocol/message-scanner';

const QUERY = 0x51;

t.test('a Query message is what pg sends for the same text', async (t) => {
  for (const sql of ['select 1', '', "select 'déjà vu', '🐘'", 'x'.repeat(70_000)]) {
    t.same(queryMessage(sql), serialize.query(sql), JSON.stringify(sql.slice(0, 20)));
  }
});

t.test('a Query message frames as one message whose body is the C string', async (t) => {
  const seen: Array<[number, string]> = [];
  const scanner = new MessageScanner(new Set([QUERY]), (type, body) => seen.push([type, body.toString('utf8')]));
  scanner.push(Buffer.concat([queryMessage('select 1'), queryMessage('select 2')]));
  t.same(seen, [
    [QUERY, 'select 1\0'],
    [QUERY, 'select 2\0'],
  ]);
  t.ok(scanner.atBoundary());
});

t.test('Terminate is a bare header', async (t) => {
  t.same(terminateMessage(), serialize.end());
  t.equal(terminateMessage()[0], MessageType.terminate);
});
