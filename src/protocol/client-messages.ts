// Builds the messages a client sends once it is past startup: simple Query, Terminate, and the extended protocol's Parse/Bind/Execute/Sync (pgfloat's benches, and a moved session's restore).

const QUERY = 0x51; // 'Q'
const TERMINATE = 0x58; // 'X'
const PARSE = 0x50; // 'P'
const BIND = 0x42; // 'B'
const EXECUTE = 0x45; // 'E'
const SYNC = 0x53; // 'S'

/** Query ('Q'): the SQL text as a C string. Build it once and send it many times: it is not copied again. */
export function queryMessage(sql: string): Buffer {
  const length = 4 + Buffer.byteLength(sql, 'utf8') + 1;
  const out = Buffer.alloc(1 + length); // zeroed, so the terminating zero byte is already there
  out[0] = QUERY;
  out.writeInt32BE(length, 1);
  out.write(sql, 5, 'utf8');
  return out;
}

/** Terminate ('X'): no body; the server closes the session without an answer. */
export function terminateMessage(): Buffer {
  const out = Buffer.alloc(5);
  out[0] = TERMINATE;
  out.writeInt32BE(4, 1);
  return out;
}

/** Parse ('P'): a named (or, with '', the unnamed) statement with its parameter type OIDs (0: let the server infer). */
export function parseMessage(name: string, sql: string, parameterTypes: readonly number[] = []): Buffer {
  const nameBytes = Buffer.byteLength(name, 'utf8') + 1;
  const sqlBytes = Buffer.byteLength(sql, 'utf8') + 1;
  const length = 4 + nameBytes + sqlBytes + 2 + 4 * parameterTypes.length;
  const out = Buffer.alloc(1 + length);
  out[0] = PARSE;
  out.writeInt32BE(length, 1);
  let offset = 5;
  offset += out.write(name, offset, 'utf8') + 1;
  offset += out.write(sql, offset, 'utf8') + 1;
  offset = out.writeInt16BE(parameterTypes.length, offset);
  for (const oid of parameterTypes) offset = out.writeUInt32BE(oid, offset);
  return out;
}

/** Bind ('B') of the unnamed statement to the unnamed portal, every parameter and result in text. */
export function bindMessage(parameters: readonly string[]): Buffer {
  const values = parameters.map((p) => Buffer.from(p, 'utf8'));
  const length = 4 + 1 + 1 + 2 + 2 + values.reduce((sum, v) => sum + 4 + v.length, 0) + 2;
  const out = Buffer.alloc(1 + length); // portal and statement names: empty C strings, already zero
  out[0] = BIND;
  out.writeInt32BE(length, 1);
  let offset = 7;
  offset = out.writeInt16BE(0, offset); // parameter formats: all text
  offset = out.writeInt16BE(values.length, offset);
  for (const value of values) {
    offset = out.writeInt32BE(value.length, offset);
    offset += value.copy(out, offset);
  }
  out.writeInt16BE(0, offset); // result formats: all text
  return out;
}

/** Execute ('E') of the unnamed portal, every row. */
export function executeMessage(): Buffer {
  const out = Buffer.alloc(10);
  out[0] = EXECUTE;
  out.writeInt32BE(9, 1);
  return out; // portal name '' and row limit 0 are zero bytes
}

/** Sync ('S'): ends an extended-protocol batch; the server answers ReadyForQuery. */
export function syncMessage(): Buffer {
  const out = Buffer.alloc(5);
  out[0] = SYNC;
  out.writeInt32BE(4, 1);
  return out;
}
