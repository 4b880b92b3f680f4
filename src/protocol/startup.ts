// Parses the first packet a client sends: SSLRequest, GSSENCRequest, CancelRequest or StartupMessage,
// and refuses it where PostgreSQL 15's ProcessStartupPacket would, in the same words.

import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_PACKET_LENGTH,
  PROTOCOL_MAJOR_3,
  SERVER_PROTOCOL_LATEST_MINOR,
  SSL_REQUEST_CODE,
  SqlState,
} from './codes';
import type { Refusal } from './refusal';

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
  | { status: 'invalid'; refusal: Refusal }
  | { status: 'ok'; packet: StartupPacket; length: number };

const INCOMPLETE: StartupParseResult = { status: 'incomplete' };
/** A Terminate message ('X', length 4) read as a startup length: a client that gave up before its startup packet. */
const TERMINATE_AS_LENGTH = 0x58000000;

/** PostgreSQL logs these and closes without a word (COMMERROR): the client is not told. */
function silentlyRefused(message: string): StartupParseResult {
  return { status: 'invalid', refusal: { reason: 'protocol-violation', code: SqlState.protocolViolation, message, silent: true } };
}

function refused(refusal: Refusal): StartupParseResult {
  return { status: 'invalid', refusal };
}

/** PostgreSQL's answer to a major version it does not speak, or to an SSLRequest/GSSENCRequest it already answered (their codes read as versions 1234.5679/5680). */
export function unsupportedProtocol(code: number): Refusal {
  const major = code >>> 16;
  const minor = code & 0xffff;
  return {
    reason: 'unsupported-protocol',
    code: SqlState.featureNotSupported,
    message: `unsupported frontend protocol ${major}.${minor}: server supports ${PROTOCOL_MAJOR_3}.0 to ${PROTOCOL_MAJOR_3}.${SERVER_PROTOCOL_LATEST_MINOR}`,
    // Only version 0.0 leaves PostgreSQL's idea of the client's protocol unset, and so in 3.0 form.
    ...(code !== 0 && major < PROTOCOL_MAJOR_3 ? { protocol2: true } : {}),
  };
}

/**
 * Startup packets have no type byte: an Int32 length (including itself), then an Int32 code.
 * The length is checked before waiting for the rest, so a client cannot make us buffer more
 * than PostgreSQL's own limit.
 */
export function parseStartupPacket(buffer: Buffer): StartupParseResult {
  if (buffer.length < 4) return INCOMPLETE;
  const length = buffer.readInt32BE(0);
  if (length < 8 || length - 4 > MAX_STARTUP_PACKET_LENGTH) {
    const why = length === TERMINATE_AS_LENGTH ? ' (a Terminate message: the client ended before sending its startup packet)' : '';
    return silentlyRefused(`invalid length of startup packet: ${length}${why}`);
  }
  if (buffer.length < length) return INCOMPLETE;
  const code = buffer.readInt32BE(4);

  // PostgreSQL reads whatever body an SSLRequest or GSSENCRequest has and ignores it.
  if (code === SSL_REQUEST_CODE) return { status: 'ok', packet: { kind: 'ssl-request' }, length };
  if (code === GSSENC_REQUEST_CODE) return { status: 'ok', packet: { kind: 'gssenc-request' }, length };
  if (code === CANCEL_REQUEST_CODE) {
    // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256, so the key is whatever follows the pid.
    // A cancel is never answered, a malformed one neither.
    if (length < 16 || length > 12 + 256) return silentlyRefused(`invalid length of CancelRequest: ${length}`);
    const processId = buffer.readInt32BE(8);
    const secretKey = Buffer.from(buffer.subarray(12, length));
    return { status: 'ok', packet: { kind: 'cancel-request', processId, secretKey }, length };
  }

  const majorVersion = code >>> 16;
  const minorVersion = code & 0xffff;
  if (majorVersion !== PROTOCOL_MAJOR_3) return refused(unsupportedProtocol(code));
  const scan = scanParameters(buffer.subarray(8, length));
  if (!scan.ok) return refused(scan.refusal);
  const { parameters, protocolOptions } = scan;
  const user = parameters.get('user');
  if (user === undefined || user === '') {
    const negotiate = minorVersion > SERVER_PROTOCOL_LATEST_MINOR || protocolOptions.length > 0 ? { negotiate: protocolOptions } : {};
    return refused({
      reason: 'protocol-violation',
      code: SqlState.invalidAuthorizationSpecification,
      message: 'no PostgreSQL user name specified in startup packet',
      ...negotiate,
    });
  }
  const raw = Buffer.from(buffer.subarray(0, length));
  return { status: 'ok', packet: { kind: 'startup', majorVersion, minorVersion, parameters, raw }, length };
}

type ParameterScan =
  | {
      ok: true;
      parameters: Map<string, string>;
      /** `_pq_.` names: protocol options, none of which PostgreSQL 15 knows. */
      protocolOptions: string[];
    }
  | { ok: false; refusal: Refusal };

/**
 * Name/value C-string pairs ending with an empty name, walked as PostgreSQL walks them: over the
 * body with a zero byte appended, so a string running off the end stops there, and the layout is
 * judged only once the walk is over (a bad `replication` value met on the way is reported first).
 */
function scanParameters(packetBody: Buffer): ParameterScan {
  const body = Buffer.concat([packetBody, Buffer.from([0])]);
  const end = packetBody.length;
  const parameters = new Map<string, string>();
  const protocolOptions: string[] = [];
  let offset = 0;
  while (offset < end) {
    if (body[offset] === 0) break;
    const nameEnd = body.indexOf(0, offset);
    if (nameEnd + 1 >= end) break; // no value: the layout check below refuses it
    const valueEnd = body.indexOf(0, nameEnd + 1);
    const name = body.toString('utf8', offset, nameEnd);
    const value = body.toString('utf8', nameEnd + 1, valueEnd);
    if (name === 'replication' && value !== 'database' && parseBool(value) === undefined) {
      const message = `invalid value for parameter "replication": "${value}"`;
      return { ok: false, refusal: { reason: 'protocol-violation', code: SqlState.invalidParameterValue, message, hint: 'Valid values are: "false", 0, "true", 1, "database".' } };
    }
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else parameters.set(name, value);
    offset = valueEnd + 1;
  }
  if (offset !== end - 1) {
    return { ok: false, refusal: { reason: 'protocol-violation', code: SqlState.protocolViolation, message: 'invalid startup packet layout: expected terminator as last byte' } };
  }
  return { ok: true, parameters, protocolOptions };
}

/** PostgreSQL's parse_bool: any case, any prefix of true/false/yes/no, on/off from two letters, 1 and 0. */
function parseBool(value: string): boolean | undefined {
  const lower = value.toLowerCase();
  const prefixOf = (word: string, minLength = 1): boolean => lower.length >= minLength && word.startsWith(lower);
  if (prefixOf('true') || prefixOf('yes') || prefixOf('on', 2) || lower === '1') return true;
  if (prefixOf('false') || prefixOf('no') || prefixOf('off', 2) || lower === '0') return false;
  return undefined;
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
