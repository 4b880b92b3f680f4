// Builds the messages a client sends once it is past startup: a simple Query and Terminate (pgfloat's benches use them).

const QUERY = 0x51; // 'Q'
const TERMINATE = 0x58; // 'X'

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
