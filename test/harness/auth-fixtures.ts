// Authentication exchanges built byte by byte for the auth unit tests, with the SCRAM-SHA-256 test vector of RFC 7677 section 3.

import { int32, message } from './wire';

/** RFC 7677 section 3: user "user", password "pencil". */
export const RFC7677 = {
  password: 'pencil',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  clientFirstBare: 'n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  iterations: 4096,
  clientFinalWithoutProof: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  proof: 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
} as const;

export const R = 'R'.charCodeAt(0);
export const P = 'p'.charCodeAt(0);

/** An 'R' body: the request code, then what it carries. */
export function authBody(code: number, rest: Buffer | string = Buffer.alloc(0)): Buffer {
  return Buffer.concat([int32(code), typeof rest === 'string' ? Buffer.from(rest, 'utf8') : rest]);
}

export const authOk = (): Buffer => authBody(0);
export const md5Request = (salt: Buffer): Buffer => authBody(5, salt);
export const saslRequest = (...mechanisms: string[]): Buffer => authBody(10, `${mechanisms.map((m) => `${m}\0`).join('')}\0`);
export const saslContinue = (data: string): Buffer => authBody(11, data);
export const saslFinal = (data: string): Buffer => authBody(12, data);

/** A SASLInitialResponse body. */
export function saslInitialBody(mechanism: string, data: string): Buffer {
  const bytes = Buffer.from(data, 'utf8');
  return Buffer.concat([Buffer.from(`${mechanism}\0`), int32(bytes.length), bytes]);
}

export const cString = (text: string): Buffer => Buffer.from(`${text}\0`, 'utf8');

/** Whole server messages (as on the wire) from ('R', body) pairs and the like. */
export function wire(...messages: Array<[type: string, body: Buffer | string]>): Buffer {
  return Buffer.concat(messages.map(([type, body]) => message(type, body)));
}
