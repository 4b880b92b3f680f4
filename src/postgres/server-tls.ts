// TLS from pgfloat to a server with libpq's sslmode meanings, for every connection pgfloat opens
// there (relayed sessions, cancel requests, monitor and admin SQL) and the tools it runs.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import type { ServerTlsMode, ServerTlsPolicy } from '../cluster/node';

export type { ServerTlsMode, ServerTlsPolicy } from '../cluster/node';

export const DEFAULT_SERVER_TLS: ServerTlsPolicy = { mode: 'prefer', ca: null, cert: null, key: null };

/** Every PEM block of a CA file parses as a certificate, and there is one at least. */
export function checkCertificates(pem: Buffer): void {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate in the CA file');
  for (const block of blocks) new X509Certificate(block);
}

/** Whether the first attempt sends an SSLRequest ('allow' tries plaintext first, 'disable' never asks). */
export function asksForTls(mode: ServerTlsMode): boolean {
  return mode !== 'disable' && mode !== 'allow';
}

/** Whether a server that answers 'N' (or an unencrypted connection) is refused. */
export function requiresTls(mode: ServerTlsMode): boolean {
  return mode === 'require' || mode === 'verify-ca' || mode === 'verify-full';
}

/** What is checked of the server's certificate: as libpq, `require` with a CA file checks the chain like verify-ca. */
export function verification(policy: ServerTlsPolicy): 'none' | 'chain' | 'chain-and-name' {
  if (policy.mode === 'verify-full') return 'chain-and-name';
  if (policy.mode === 'verify-ca' || (policy.mode === 'require' && policy.ca !== null)) return 'chain';
  return 'none';
}

interface TlsFileContents {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Read once per process (and again by reloadServerTlsFiles): connections are opened all day. */
const fileCache = new Map<string, Buffer>();

function readTlsFile(kind: 'ca' | 'cert' | 'key', path: string): Buffer {
  let contents = fileCache.get(path);
  if (contents === undefined) {
    try {
      contents = readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read serverTls.${kind} ${path}: ${(err as Error).message}`);
    }
    fileCache.set(path, contents);
  }
  return contents;
}

/**
 * A reload: reads every file of `policies` again and checks each set loads as TLS would use it.
 * Only when all do are they used from the next connection on; otherwise the files read before
 * stay in use and the reason comes back, naming the file, never its contents.
 */
export function reloadServerTlsFiles(policies: readonly ServerTlsPolicy[]): { ok: true } | { ok: false; reason: string } {
  const fresh = new Map<string, Buffer>();
  try {
    for (const policy of policies) {
      const contents: TlsFileContents = {};
      for (const kind of ['ca', 'cert', 'key'] as const) {
        const path = policy[kind];
        if (path === null) continue;
        let data = fresh.get(path);
        if (data === undefined) {
          try {
            data = readFileSync(path);
          } catch (err) {
            throw new Error(`cannot read serverTls.${kind} ${path}: ${(err as Error).message}`);
          }
          fresh.set(path, data);
        }
        contents[kind] = data;
      }
      try {
        // createSecureContext takes a CA file without a certificate in it silently.
        if (contents.ca !== undefined) checkCertificates(contents.ca);
        createSecureContext(contents);
      } catch (err) {
        throw new Error(`serverTls files ${[policy.ca, policy.cert, policy.key].filter((p) => p !== null).join(', ')} are not usable for TLS: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  fileCache.clear();
  for (const [path, data] of fresh) fileCache.set(path, data);
  return { ok: true };
}

function fileContents(policy: ServerTlsPolicy): TlsFileContents {
  return {
    ...(policy.ca !== null && { ca: readTlsFile('ca', policy.ca) }),
    ...(policy.cert !== null && { cert: readTlsFile('cert', policy.cert) }),
    ...(policy.key !== null && { key: readTlsFile('key', policy.key) }),
  };
}

/**
 * Options for tls.connect over a socket whose server answered 'S'. Without verification the
 * certificate is still received (channel binding needs it) but not judged, as libpq's require.
 */
export function tlsConnectOptions(policy: ServerTlsPolicy, host: string): ConnectionOptions {
  const check = verification(policy);
  return {
    ...fileContents(policy),
    host,
    // libpq sends SNI for host names only; Node warns on an IP address as servername.
    ...(isIP(host) === 0 && { servername: host }),
    rejectUnauthorized: check !== 'none',
    ...(check !== 'chain-and-name' && { checkServerIdentity: () => undefined }),
  };
}

/** node-postgres's `ssl` option for the first attempt: false for plaintext. */
export function pgSslOption(policy: ServerTlsPolicy, host: string): false | ConnectionOptions {
  if (!asksForTls(policy.mode)) return false;
  const { host: _host, ...options } = tlsConnectOptions(policy, host);
  return options;
}

/** Every variable libpqEnvironment may set: a command given some of them must not inherit the others from pgfloat. */
export const LIBPQ_TLS_VARIABLES = ['PGSSLMODE', 'PGSSLROOTCERT', 'PGSSLCERT', 'PGSSLKEY'] as const;

/** libpq's environment for the tools pgfloat runs (pg_rewind, pg_basebackup) and operators' commands. */
export function libpqEnvironment(policy: ServerTlsPolicy): Record<string, string> {
  return {
    PGSSLMODE: policy.mode,
    ...(policy.ca !== null && { PGSSLROOTCERT: policy.ca }),
    ...(policy.cert !== null && { PGSSLCERT: policy.cert }),
    ...(policy.key !== null && { PGSSLKEY: policy.key }),
  };
}

/** The same as conninfo keywords (a standby's primary_conninfo, pg_rewind's --source-server). */
export function libpqConninfo(policy: ServerTlsPolicy): Record<string, string> {
  return {
    sslmode: policy.mode,
    ...(policy.ca !== null && { sslrootcert: policy.ca }),
    ...(policy.cert !== null && { sslcert: policy.cert }),
    ...(policy.key !== null && { sslkey: policy.key }),
  };
}

/** Node's TLS error codes that mean the server's certificate failed a check (rather than the connection failing). */
const VERIFICATION_CODES = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
]);

/** Why a server's certificate was refused, naming the check; undefined if `err` is not a verification failure. */
export function certificateFailure(err: unknown, policy: ServerTlsPolicy): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !VERIFICATION_CODES.has(code)) return undefined;
  const check = code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH' ? 'host name' : 'certificate chain';
  return `server certificate failed the ${check} check of serverTls.mode ${policy.mode}: ${(err as Error).message}`;
}
