// One fuzzed client connection over a raw socket: sends its bytes, terminates a session that got established, and judges how the connection ended.

import { parseStartupPacket } from '../../src/protocol/startup';
import { parseErrorResponse, parseProtocol2Error, rawConnect, sleep, splitMessages, type BackendMessage, type ParsedError } from './clients';
import { chunked, oneByteAtATime } from './client-bytes';

export type Delivery = 'whole' | 'chunked' | 'byte-by-byte';

export interface Ending {
  /**
   * established: a ReadyForQuery came (then we sent Terminate); error: it ended with an
   * ErrorResponse; protocol-2 error: with the refusal of a 1.x or 2.x client; closed: with neither.
   */
  how: 'established' | 'error' | 'protocol-2 error' | 'closed';
  /** The last ErrorResponse received. */
  error?: { severity: string; code: string; message: string };
  /** Set when the ending breaks a rule: a hang, bytes that are not messages, a malformed ErrorResponse. */
  problem?: string;
}

const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);
const N = 0x4e;
const S = 0x53;

/** How many SSLRequest/GSSENCRequest packets `send` starts with: each may be answered with one byte, 'N' or 'S'. */
export function negotiations(send: Buffer): number {
  let count = 0;
  for (let offset = 0; ; count++) {
    const r = parseStartupPacket(send.subarray(offset));
    if (r.status !== 'ok' || (r.packet.kind !== 'ssl-request' && r.packet.kind !== 'gssenc-request')) return count;
    offset += r.length;
  }
}

/**
 * Connects to `port`, sends `send` as `delivery` says (a millisecond between pieces), half-closes
 * at once when `halfClose`, and waits for the connection to close, at most `guardMs`. A session
 * that reaches ReadyForQuery is sent a Terminate and half-closed, as a client leaving.
 */
export async function runConnection(port: number, send: Buffer, delivery: Delivery, cuts: readonly number[], halfClose: boolean, guardMs = 15_000): Promise<Ending> {
  const conn = await rawConnect(port);
  const socket = conn.socket;
  let closed = false;
  const done = conn.closed.then(() => void (closed = true));
  const pieces = delivery === 'whole' ? [send] : delivery === 'chunked' ? chunked(send, cuts) : oneByteAtATime(send);
  for (const piece of pieces) {
    if (closed || socket.destroyed) break;
    socket.write(piece);
    if (delivery !== 'whole') await sleep(1);
  }
  let ended = false;
  const end = (): void => {
    if (ended || closed || socket.destroyed) return;
    ended = true;
    socket.end();
  };
  if (halfClose) end();
  const prefix = negotiations(send);
  const deadline = Date.now() + guardMs;
  while (!closed) {
    if (Date.now() > deadline) {
      socket.destroy();
      return { how: 'closed', problem: `not closed within ${guardMs} ms; received ${conn.received().toString('hex').slice(0, 80)}` };
    }
    if (!ended && sawReady(conn.received(), prefix)) {
      socket.write(TERMINATE);
      end();
    }
    await Promise.race([done, sleep(20)]);
  }
  return judge(conn.received(), prefix);
}

/** Whether a ReadyForQuery has arrived (after up to `maxPrefix` negotiation answers). */
function sawReady(data: Buffer, maxPrefix: number): boolean {
  for (let a = 0; a <= Math.min(maxPrefix, data.length); a++) {
    if (a > 0 && data[a - 1] !== N && data[a - 1] !== S) return false;
    if (splitMessages(data.subarray(a)).some((m) => m.type === 'Z')) return true;
  }
  return false;
}

/** Splits a reply into its one-byte negotiation answers and whole messages (or one protocol-2 error); undefined if it is not that shape. */
export function readReply(data: Buffer, maxPrefix: number): { answers: Buffer; messages: BackendMessage[]; protocol2?: { severity: string; message: string } } | undefined {
  for (let a = 0; a <= Math.min(maxPrefix, data.length); a++) {
    if (a > 0 && data[a - 1] !== N && data[a - 1] !== S) return undefined;
    const rest = data.subarray(a);
    const protocol2 = parseProtocol2Error(rest);
    if (protocol2 !== undefined) return { answers: data.subarray(0, a), messages: [], protocol2 };
    const messages = splitMessages(rest);
    // After 'S' the client should speak TLS: only TLS records (an alert for garbage) may follow, no plaintext message.
    if (a > 0 && data[a - 1] === S) return tlsRecords(rest) ? { answers: data.subarray(0, a), messages: [] } : undefined;
    if (messages.reduce((n, m) => n + 5 + m.body.length, 0) !== rest.length) continue;
    return { answers: data.subarray(0, a), messages };
  }
  return undefined;
}

/** True when `data` is whole TLS records: content type 20-23, version 3.x, a 16-bit length. */
function tlsRecords(data: Buffer): boolean {
  let offset = 0;
  while (offset + 5 <= data.length && data[offset]! >= 20 && data[offset]! <= 23 && data[offset + 1] === 3) offset += 5 + data.readUInt16BE(offset + 3);
  return offset === data.length;
}

/** The rules every connection's ending must follow, whatever it sent. */
export function judge(data: Buffer, maxPrefix: number): Ending {
  const reply = readReply(data, maxPrefix);
  if (reply === undefined) return { how: 'closed', problem: `the reply is not negotiation answers then whole messages: ${data.toString('hex').slice(0, 120)}` };
  if (reply.protocol2 !== undefined) {
    const { severity, message } = reply.protocol2;
    return severity === 'FATAL' ? { how: 'protocol-2 error' } : { how: 'closed', problem: `a protocol-2 error that is not FATAL: ${severity}: ${message}` };
  }
  const { messages } = reply;
  let error: Ending['error'];
  for (const [i, m] of messages.entries()) {
    if (m.type !== 'E') continue;
    let parsed: ParsedError;
    try {
      parsed = parseErrorResponse(m.body);
    } catch (err) {
      return { how: 'closed', problem: `malformed ErrorResponse: ${(err as Error).message}` };
    }
    const { severity, code, message } = parsed;
    if ((severity !== 'FATAL' && severity !== 'ERROR') || code === undefined || !/^[0-9A-Z]{5}$/.test(code) || !message) {
      return { how: 'closed', problem: `ErrorResponse without a severity, SQLSTATE or message: ${JSON.stringify(parsed.fields)}` };
    }
    if (severity === 'FATAL' && i !== messages.length - 1) return { how: 'closed', problem: `messages after a FATAL ${code}` };
    error = { severity, code, message };
  }
  // No authentication message: refused before any server spoke, by pgfloat or the server, with one
  // ErrorResponse (a NegotiateProtocolVersion may come first, as PostgreSQL sends it).
  const refusal = messages[0]?.type === 'v' ? messages.slice(1) : messages;
  if (!messages.some((m) => m.type === 'R') && (refusal.length > 1 || (messages.length > 0 && refusal[0]?.type !== 'E'))) {
    return { how: 'closed', problem: `a refusal of ${messages.length} messages (${messages.map((m) => m.type).join('')}) instead of one ErrorResponse` };
  }
  const how = messages.some((m) => m.type === 'Z') ? 'established' : messages.at(-1)?.type === 'E' ? 'error' : 'closed';
  return { how, ...(error ? { error } : {}) };
}
