// Writes the server-to-client messages pgfloat originates itself: ErrorResponse, ParameterStatus and the one-byte SSL/GSS answers.

import type { SqlStateCode } from './codes';

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
