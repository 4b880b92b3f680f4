// SCRAM-SHA-256 (RFC 5802, RFC 7677) worked from the keys rather than the password: pgfloat never
// sees a password, only what a client's proof and the role's stored verifier give away.

import { createHash, createHmac, pbkdf2Sync, timingSafeEqual } from 'node:crypto';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';
export const SCRAM_KEY_LENGTH = 32;

/** What pg_authid.rolpassword holds for a SCRAM role: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

const BASE64 = '[A-Za-z0-9+/]+={0,2}';
const VERIFIER = new RegExp(`^SCRAM-SHA-256\\$(\\d+):(${BASE64})\\$(${BASE64}):(${BASE64})$`);

export function parseScramVerifier(rolpassword: string): ScramVerifier | undefined {
  const match = VERIFIER.exec(rolpassword);
  if (match === null) return undefined;
  const iterations = Number(match[1]);
  const storedKey = Buffer.from(match[3]!, 'base64');
  const serverKey = Buffer.from(match[4]!, 'base64');
  if (!Number.isSafeInteger(iterations) || iterations < 1) return undefined;
  if (storedKey.length !== SCRAM_KEY_LENGTH || serverKey.length !== SCRAM_KEY_LENGTH) return undefined;
  return { iterations, salt: Buffer.from(match[2]!, 'base64'), storedKey, serverKey };
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

export function hmacSha256(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length) throw new RangeError(`xor of ${a.length} and ${b.length} bytes`);
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Constant-time equality that, unlike timingSafeEqual, answers false for different lengths instead of throwing. */
export function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What both proofs and both signatures sign: the exchange so far, minus the proof itself. */
export function authMessage(clientFirstBare: string, serverFirst: string, clientFinalWithoutProof: string): string {
  return `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
}

/**
 * The client's proof is its ClientKey masked by a signature anyone with the StoredKey can compute,
 * so the StoredKey unmasks it; hashing the result back to the StoredKey tells whether the proof and
 * the verifier belong together. Undefined when they do not.
 */
export function clientKeyFromProof(storedKey: Buffer, message: string, proof: Buffer): Buffer | undefined {
  if (proof.length !== SCRAM_KEY_LENGTH) return undefined;
  const clientKey = xor(proof, hmacSha256(storedKey, message));
  return sameBytes(sha256(clientKey), storedKey) ? clientKey : undefined;
}

export function clientProof(clientKey: Buffer, message: string): Buffer {
  return xor(clientKey, hmacSha256(sha256(clientKey), message));
}

export function serverSignature(serverKey: Buffer, message: string): Buffer {
  return hmacSha256(serverKey, message);
}

/**
 * The keys a password gives (RFC 5802 section 3). pgfloat itself never has a password: this is
 * for checking the rest against published test vectors and for tests that build verifiers.
 */
export function keysFromPassword(password: string, salt: Buffer, iterations: number): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const saltedPassword = pbkdf2Sync(password, salt, iterations, SCRAM_KEY_LENGTH, 'sha256');
  const clientKey = hmacSha256(saltedPassword, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmacSha256(saltedPassword, 'Server Key') };
}

/** The rolpassword PostgreSQL would store for these keys. */
export function formatScramVerifier(verifier: ScramVerifier): string {
  const b64 = (b: Buffer): string => b.toString('base64');
  return `${SCRAM_SHA_256}$${verifier.iterations}:${b64(verifier.salt)}$${b64(verifier.storedKey)}:${b64(verifier.serverKey)}`;
}

/**
 * A SCRAM message's `name=value` attributes. Values never contain ',' (RFC 5802 escapes it in
 * names, and nonces and base64 exclude it), so splitting on ',' is exact. Undefined when malformed.
 */
export function scramAttributes(message: string): Map<string, string> | undefined {
  const attributes = new Map<string, string>();
  for (const part of message.split(',')) {
    if (part.length < 2 || part[1] !== '=') return undefined;
    attributes.set(part[0]!, part.slice(2));
  }
  return attributes;
}

/** Strict base64, since Buffer.from(..., 'base64') silently skips what is not. */
export function decodeBase64(text: string): Buffer | undefined {
  if (!new RegExp(`^(${BASE64})?$`).test(text) || text.length % 4 !== 0) return undefined;
  return Buffer.from(text, 'base64');
}
