// Writes the server-to-client messages pgfloat originates itself: ErrorResponse, NegotiateProtocolVersion, ParameterStatus and the one-byte SSL/GSS answers.

import { PROTOCOL_MAJOR_3, SERVER_PROTOCOL_LATEST_MINOR, type SqlStateCode } from './codes';
import type { Refusal } from './refusal';

export type Severity = 'FATAL' | 'ERROR';

export interface ErrorFields {
  severity?: Severity;
  code: SqlStateCode;
  message: string;
  detail?: string;
  hint?: string;
}

/**
 * ErrorResponse ('E'): each field is a type byte and a C string, and the list ends with a zero byte.
 * 'S' is the localized severity and 'V' the non-localized one; clients (libpq, pg) read either.
 */
export function errorResponse(fields: ErrorFields): Buffer {
  const severity = fields.severity ?? 'FATAL';
  const parts: Array<[string, string]> = [
    ['S', severity],
    ['V', severity],
    ['C', fields.code],
    ['M', fields.message],
  ];
  if (fields.detail !== undefined) parts.push(['D', fields.detail]);
  if (fields.hint !== undefined) parts.push(['H', fields.hint]);
  let bodyLength = 1; // the terminating zero byte
  for (const [, value] of parts) bodyLength += 1 + Buffer.byteLength(value, 'utf8') + 1;
  const out = Buffer.alloc(1 + 4 + bodyLength);
  out[0] = 0x45; // 'E'
  out.writeInt32BE(4 + bodyLength, 1);
  let offset = 5;
  for (const [type, value] of parts) {
    out[offset++] = type.charCodeAt(0);
    offset += out.write(value, offset, 'utf8');
    out[offset++] = 0;
  }
  out[offset] = 0;
  return out;
}

/**
 * Protocol 2's error: 'E' and a NUL-terminated line, no length word. PostgreSQL 15 no longer
 * speaks protocol 2 but still refuses a 1.x or 2.x client this way, the only form it can read.
 */
export function protocol2ErrorResponse(severity: Severity, message: string): Buffer {
  return Buffer.concat([Buffer.from('E'), Buffer.from(`${severity}:  ${message}\n`, 'utf8'), Buffer.from([0])]);
}

/** NegotiateProtocolVersion ('v'): the newest version the server speaks and the `_pq_.` options it does not know. */
export function negotiateProtocolVersion(unrecognizedOptions: readonly string[]): Buffer {
  const names = unrecognizedOptions.map((name) => Buffer.from(`${name}\0`, 'utf8'));
  const out = Buffer.alloc(1 + 4 + 4 + 4 + names.reduce((n, b) => n + b.length, 0));
  out[0] = 0x76; // 'v'
  out.writeInt32BE(out.length - 1, 1);
  out.writeInt32BE((PROTOCOL_MAJOR_3 << 16) | SERVER_PROTOCOL_LATEST_MINOR, 5);
  out.writeInt32BE(names.length, 9);
  Buffer.concat(names).copy(out, 13);
  return out;
}

/** Everything a refused client is sent, as PostgreSQL would send it; nothing for a silent refusal. */
export function refusalReply(refusal: Refusal): Buffer {
  if (refusal.silent === true) return Buffer.alloc(0);
  if (refusal.protocol2 === true) return protocol2ErrorResponse('FATAL', refusal.message);
  const error = errorResponse({ severity: 'FATAL', code: refusal.code, message: refusal.message, detail: refusal.detail, hint: refusal.hint });
  return refusal.negotiate === undefined ? error : Buffer.concat([negotiateProtocolVersion(refusal.negotiate), error]);
}

export const SSL_NOT_SUPPORTED = Buffer.from('N');
export const SSL_ACCEPTED = Buffer.from('S');
export const GSSENC_NOT_SUPPORTED = Buffer.from('N');

/** ParameterStatus ('S'): what a server sends when a reported setting changes. */
export function parameterStatus(name: string, value: string): Buffer {
  const length = 4 + Buffer.byteLength(name, 'utf8') + 1 + Buffer.byteLength(value, 'utf8') + 1;
  const out = Buffer.alloc(1 + length);
  out[0] = 0x53; // 'S'
  out.writeInt32BE(length, 1);
  const at = 5 + out.write(name, 5, 'utf8') + 1;
  out.write(value, at, 'utf8');
  return out;
}
