// What logging in again as a user takes, from a captured login and the role's stored password: never the password itself.

import type { CapturedAuth } from './auth-capture';
import { md5Answer, MD5_STORED_HASH } from './md5';
import { authMessage, clientKeyFromProof, parseScramVerifier } from './scram';
import { redactingRecord } from './redaction';

export type LoginSecret =
  | { method: 'trust' }
  /** rolpassword as stored: 'md5' and 32 hex digits. */
  | { method: 'md5'; storedHash: string }
  | { method: 'scram-sha-256'; clientKey: Buffer; serverKey: Buffer };

// The ServerKey is no login secret, but with it a server could be impersonated to pgfloat.
const redactedMd5Secret = redactingRecord<Extract<LoginSecret, { method: 'md5' }>>(['storedHash']);
const redactedScramSecret = redactingRecord<Extract<LoginSecret, { method: 'scram-sha-256' }>>(['clientKey', 'serverKey']);

/**
 * rolpassword: the role's pg_authid.rolpassword as the auth query returned it (null if none).
 *
 * The stored password must be the one the captured login was checked against: with a password
 * changed since, or a lookup that returned another role's, the repeated login would only fail
 * later, on the new server, with its 28P01. So it is checked against the capture here: the SCRAM
 * proof only unmasks to a ClientKey that hashes to this verifier's StoredKey, and the md5 answer
 * is recomputed from the stored hash.
 */
export function loginSecretOf(captured: CapturedAuth, rolpassword: string | null): LoginSecret | { error: string } {
  switch (captured.method) {
    case 'trust':
      return { method: 'trust' };
    case 'unmovable':
      return { error: `the login cannot be repeated: ${captured.why}` };
    case 'md5':
      return md5SecretOf(captured, rolpassword);
    case 'scram-sha-256':
      return scramSecretOf(captured, rolpassword);
  }
}

/** A LoginSecret that came through a structured clone (from another thread) is a bare object again: this redacts it anew. */
export function redactedLoginSecret(secret: LoginSecret): LoginSecret {
  switch (secret.method) {
    case 'trust':
      return { method: 'trust' };
    case 'md5':
      return redactedMd5Secret({ method: 'md5', storedHash: secret.storedHash });
    case 'scram-sha-256':
      return redactedScramSecret({ method: 'scram-sha-256', clientKey: Buffer.from(secret.clientKey), serverKey: Buffer.from(secret.serverKey) });
  }
}

function md5SecretOf(captured: Extract<CapturedAuth, { method: 'md5' }>, rolpassword: string | null): LoginSecret | { error: string } {
  if (rolpassword === null) return { error: 'the role has no stored password' };
  if (!MD5_STORED_HASH.test(rolpassword)) return { error: `the login used md5 but the stored password is ${describeStored(rolpassword)}` };
  const challenge = captured.challenge;
  if (challenge !== undefined && md5Answer(rolpassword, challenge.salt) !== challenge.response) {
    return { error: 'the stored md5 hash does not answer the captured challenge (the password changed since the login?)' };
  }
  return redactedMd5Secret({ method: 'md5', storedHash: rolpassword });
}

function scramSecretOf(captured: Extract<CapturedAuth, { method: 'scram-sha-256' }>, rolpassword: string | null): LoginSecret | { error: string } {
  if (rolpassword === null) return { error: 'the role has no stored password' };
  const verifier = parseScramVerifier(rolpassword);
  if (verifier === undefined) {
    if (rolpassword.startsWith(SCRAM_PREFIX)) return { error: 'the stored SCRAM-SHA-256 verifier is malformed' };
    return { error: `the login used SCRAM-SHA-256 but the stored password is ${describeStored(rolpassword)}` };
  }
  const message = authMessage(captured.clientFirstBare, captured.serverFirst, captured.clientFinalWithoutProof);
  const clientKey = clientKeyFromProof(verifier.storedKey, message, captured.clientProof);
  if (clientKey === undefined) {
    return { error: "the client's SCRAM proof does not match the stored verifier (the password changed since the login?)" };
  }
  return redactedScramSecret({ method: 'scram-sha-256', clientKey, serverKey: verifier.serverKey });
}

const SCRAM_PREFIX = 'SCRAM-SHA-256$';

/** Names the kind of a stored password without showing any of it. */
function describeStored(rolpassword: string): string {
  if (rolpassword.startsWith(SCRAM_PREFIX)) return 'a SCRAM-SHA-256 verifier';
  if (rolpassword.startsWith('md5')) return 'an md5 hash';
  return 'neither an md5 hash nor a SCRAM verifier';
}
