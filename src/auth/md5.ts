// PostgreSQL's md5 password challenge, answered from the stored hash: the hash is the password as far as md5 is concerned.

import { createHash } from 'node:crypto';

/** pg_authid.rolpassword of an md5 role: 'md5' then md5(password || username) in hex. */
export const MD5_STORED_HASH = /^md5[0-9a-f]{32}$/;

/**
 * The PasswordMessage text for an AuthenticationMD5Password salt. A client computes
 * md5(md5(password || user) || salt); the inner hash is what the server stores, so the stored
 * hash alone answers any salt.
 */
export function md5Answer(storedHash: string, salt: Buffer): string {
  if (!MD5_STORED_HASH.test(storedHash)) throw new RangeError('not an md5 stored hash');
  const digest = createHash('md5').update(storedHash.slice(3), 'latin1').update(salt).digest('hex');
  return `md5${digest}`;
}
