// Parses the first packet a client sends: SSLRequest, GSSENCRequest, CancelRequest or StartupMessage.

import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_PACKET_LENGTH,
  PROTOCOL_MAJOR_3,
  SSL_REQUEST_CODE,
  SqlState,
  type SqlStateCode,
} from './codes';

export type StartupPacket =
  | { kind: 'ssl-request' }
  | { kind: 'gssenc-request' }
  | { kind: 'cancel-request'; processId: number; secretKey: Buffer }
  | {
      kind: 'startup';
      majorVersion: number;
      minorVersion: number;
      parameters: ReadonlyMap<string, string>;
      /** The packet exactly as received, forwarded to the server unchanged. */
      raw: Buffer;
    };

export type StartupParseResult =
  | { status: 'incomplete' }
  | { status: 'invalid'; code: SqlStateCode; message: string }
  | { status: 'ok'; packet: StartupPacket; length: number };

const INCOMPLETE: StartupParseResult = { status: 'incomplete' };

function invalid(message: string, code: SqlStateCode = SqlState.protocolViolation): StartupParseResult {
  return { status: 'invalid', code, message };
}

/**
 * Startup packets have no type byte: an Int32 length (including itself), then an Int32 code.
 * The length is checked before waiting for the rest, so a client cannot make us buffer more
 * than PostgreSQL's own limit.
 */
export function parseStartupPacket(buffer: Buffer): StartupParseResult {
  if (buffer.length < 4) return INCOMPLETE;
  const length = buffer.readInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH) {
    return invalid(`invalid length of startup packet: ${length}`);
  }
  if (buffer.length < length) return INCOMPLETE;
  const code = buffer.readInt32BE(4);

  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (length !== 8) return invalid(`invalid length of ${code === SSL_REQUEST_CODE ? 'SSLRequest' : 'GSSENCRequest'}: ${length}`);
    return { status: 'ok', packet: { kind: code === SSL_REQUEST_CODE ? 'ssl-request' : 'gssenc-request' }, length };
  }
  if (code === CANCEL_REQUEST_CODE) {
    // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256, so the key is whatever follows the pid.
    if (length < 16 || length > 12 + 256) return invalid(`invalid length of CancelRequest: ${length}`);
    const processId = buffer.readInt32BE(8);
    const secretKey = Buffer.from(buffer.subarray(12, length));
    return { status: 'ok', packet: { kind: 'cancel-request', processId, secretKey }, length };
  }

  const majorVersion = code >>> 16;
  const minorVersion = code & 0xffff;
  if (majorVersion !== PROTOCOL_MAJOR_3) {
    return invalid(
      `unsupported frontend protocol ${majorVersion}.${minorVersion}: server supports 3.0 to 3.2`,
      SqlState.featureNotSupported,
    );
  }
  const parameters = parseParameters(buffer, 8, length);
  if (typeof parameters === 'string') return invalid(parameters);
  if (!parameters.has('user')) {
    return invalid('no PostgreSQL user name specified in startup packet', SqlState.invalidAuthorizationSpecification);
  }
  const raw = Buffer.from(buffer.subarray(0, length));
  return { status: 'ok', packet: { kind: 'startup', majorVersion, minorVersion, parameters, raw }, length };
}

/** Name/value C-string pairs ending with an empty name; returns an error message when malformed. */
function parseParameters(buffer: Buffer, start: number, end: number): Map<string, string> | string {
  const parameters = new Map<string, string>();
  let offset = start;
  for (;;) {
    if (offset >= end) return 'invalid startup packet layout: expected terminator as last byte';
    if (buffer[offset] === 0) break;
    const nameEnd = buffer.indexOf(0, offset);
    if (nameEnd === -1 || nameEnd >= end) return 'invalid startup packet layout: unterminated parameter name';
    const valueEnd = buffer.indexOf(0, nameEnd + 1);
    if (valueEnd === -1 || valueEnd >= end) return 'invalid startup packet layout: unterminated parameter value';
    parameters.set(buffer.toString('utf8', offset, nameEnd), buffer.toString('utf8', nameEnd + 1, valueEnd));
    offset = valueEnd + 1;
  }
  if (offset !== end - 1) return 'invalid startup packet layout: expected terminator as last byte';
  return parameters;
}

/** Builds a StartupMessage; used by tests and by pgfloat's own probes. */
export function startupMessage(parameters: Record<string, string>, minorVersion = 0): Buffer {
  const pairs = Object.entries(parameters).flatMap(([k, v]) => [k, v]);
  const body = Buffer.concat([...pairs.map((s) => Buffer.from(`${s}\0`, 'utf8')), Buffer.from([0])]);
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE((PROTOCOL_MAJOR_3 << 16) | minorVersion, 4);
  body.copy(out, 8);
  return out;
}

export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.alloc(12 + secretKey.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  secretKey.copy(out, 12);
  return out;
}
