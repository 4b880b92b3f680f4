// The authentication messages of protocol 3: the server's requests ('R') and the client's answers ('p'), as bodies without the length word.

import { MessageType } from '../protocol/message-scanner';


/** The int32 that opens every 'R' body (PostgreSQL's AUTH_REQ_*). */
export const AuthRequestCode = {
  ok: 0,
  kerberosV5: 2,
  cleartextPassword: 3,
  md5Password: 5,
  gss: 7,
  gssContinue: 8,
  sspi: 9,
  sasl: 10,
  saslContinue: 11,
  saslFinal: 12,
} as const;

const REQUEST_NAMES: Record<number, string> = {
  [AuthRequestCode.kerberosV5]: 'Kerberos V5',
  [AuthRequestCode.cleartextPassword]: 'a cleartext password',
  [AuthRequestCode.md5Password]: 'an md5 password',
  [AuthRequestCode.gss]: 'GSSAPI',
  [AuthRequestCode.gssContinue]: 'GSSAPI (continued)',
  [AuthRequestCode.sspi]: 'SSPI',
  [AuthRequestCode.sasl]: 'SASL',
  [AuthRequestCode.saslContinue]: 'SASL (continued)',
  [AuthRequestCode.saslFinal]: 'SASL (final)',
};

/** For messages: what the server asked for. */
export function authRequestName(code: number): string {
  return REQUEST_NAMES[code] ?? `authentication request ${code}`;
}

export class MalformedAuthMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedAuthMessage';
  }
}

export type AuthenticationRequest =
  | { kind: 'ok' }
  | { kind: 'md5'; salt: Buffer }
  | { kind: 'sasl'; mechanisms: string[] }
  | { kind: 'sasl-continue'; data: Buffer }
  | { kind: 'sasl-final'; data: Buffer }
  /** Everything pgfloat cannot answer itself: cleartext, GSSAPI, SSPI, codes it does not know. */
  | { kind: 'other'; code: number };

export function parseAuthenticationRequest(body: Buffer): AuthenticationRequest {
  if (body.length < 4) throw new MalformedAuthMessage(`authentication request of ${body.length} bytes`);
  const code = body.readInt32BE(0);
  switch (code) {
    case AuthRequestCode.ok:
      return { kind: 'ok' };
    case AuthRequestCode.md5Password:
      if (body.length !== 8) throw new MalformedAuthMessage(`md5 request of ${body.length} bytes`);
      return { kind: 'md5', salt: Buffer.from(body.subarray(4, 8)) };
    case AuthRequestCode.sasl:
      return { kind: 'sasl', mechanisms: cStringList(body, 4) };
    case AuthRequestCode.saslContinue:
      return { kind: 'sasl-continue', data: Buffer.from(body.subarray(4)) };
    case AuthRequestCode.saslFinal:
      return { kind: 'sasl-final', data: Buffer.from(body.subarray(4)) };
    default:
      return { kind: 'other', code };
  }
}

/** SASLInitialResponse: the mechanism chosen, then the initial client message (length -1 when there is none). */
export function parseSaslInitialResponse(body: Buffer): { mechanism: string; data: Buffer | undefined } {
  const nameEnd = body.indexOf(0);
  if (nameEnd === -1 || body.length < nameEnd + 5) throw new MalformedAuthMessage('SASLInitialResponse without mechanism and length');
  const length = body.readInt32BE(nameEnd + 1);
  const dataStart = nameEnd + 5;
  if (length === -1 && body.length === dataStart) return { mechanism: body.toString('utf8', 0, nameEnd), data: undefined };
  if (length !== body.length - dataStart) throw new MalformedAuthMessage(`SASLInitialResponse data length ${length} in ${body.length - dataStart} bytes`);
  return { mechanism: body.toString('utf8', 0, nameEnd), data: Buffer.from(body.subarray(dataStart)) };
}

/** A PasswordMessage's text (one C string filling the body). */
export function parsePasswordMessage(body: Buffer): string {
  if (body.length === 0 || body.indexOf(0) !== body.length - 1) throw new MalformedAuthMessage('PasswordMessage is not one C string');
  return body.toString('utf8', 0, body.length - 1);
}

export function parseParameterStatus(body: Buffer): [name: string, value: string] {
  const nameEnd = body.indexOf(0);
  const valueEnd = nameEnd === -1 ? -1 : body.indexOf(0, nameEnd + 1);
  if (valueEnd !== body.length - 1) throw new MalformedAuthMessage('ParameterStatus is not two C strings');
  return [body.toString('utf8', 0, nameEnd), body.toString('utf8', nameEnd + 1, valueEnd)];
}

/** BackendKeyData: the key is 4 bytes in protocol 3.0 and up to 256 from 3.2, so it is whatever follows the pid. */
export function parseBackendKeyData(body: Buffer): { processId: number; secretKey: Buffer } {
  if (body.length < 8) throw new MalformedAuthMessage(`BackendKeyData of ${body.length} bytes`);
  return { processId: body.readInt32BE(0), secretKey: Buffer.from(body.subarray(4)) };
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const name = Buffer.from(`${mechanism}\0`, 'utf8');
  const length = Buffer.alloc(4);
  length.writeInt32BE(data.length, 0);
  return typedMessage(MessageType.password, Buffer.concat([name, length, data]));
}

export function saslResponse(data: Buffer): Buffer {
  return typedMessage(MessageType.password, data);
}

export function passwordMessage(text: string): Buffer {
  return typedMessage(MessageType.password, Buffer.from(`${text}\0`, 'utf8'));
}

/** AuthenticationSASL: the mechanisms the server offers. */
export function authenticationSasl(mechanisms: readonly string[]): Buffer {
  const code = Buffer.alloc(4);
  code.writeInt32BE(AuthRequestCode.sasl, 0);
  return typedMessage(MessageType.authentication, Buffer.concat([code, ...mechanisms.map((m) => Buffer.from(`${m}\0`, 'utf8')), Buffer.from([0])]));
}

/** AuthenticationSASLFinal: the server-final message. */
export function authenticationSaslFinal(data: Buffer): Buffer {
  const code = Buffer.alloc(4);
  code.writeInt32BE(AuthRequestCode.saslFinal, 0);
  return typedMessage(MessageType.authentication, Buffer.concat([code, data]));
}

function typedMessage(type: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** C strings up to an empty one, as in AuthenticationSASL's mechanism list. */
function cStringList(body: Buffer, from: number): string[] {
  const out: string[] = [];
  let offset = from;
  for (;;) {
    const end = body.indexOf(0, offset);
    if (end === -1) throw new MalformedAuthMessage('unterminated list of SASL mechanisms');
    if (end === offset) return out;
    out.push(body.toString('utf8', offset, end));
    offset = end + 1;
  }
}
