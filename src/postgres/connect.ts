// pgfloat's own pg connections to a server (monitor, admin SQL, the auth query), with the node's serverTls.

import { Client, type ClientConfig } from 'pg';
import { TLSSocket } from 'node:tls';
import type { NodeAddress } from '../cluster/node';
import { certificateFailure, DEFAULT_SERVER_TLS, pgSslOption, tlsConnectOptions, type ServerTlsPolicy } from './server-tls';

/** Everything of a pg client's configuration but where it goes and how it encrypts: that is the node's. */
export type PgClientConfig = Omit<ClientConfig, 'host' | 'port' | 'ssl' | 'connectionString' | 'stream'>;

/** pg's error when a server answers an SSLRequest with 'N' (ssl = off). */
const SERVER_REFUSED_TLS = 'The server does not support SSL connections';

/**
 * The server's certificate failed a check the node's serverTls.mode asks for. The message names
 * the check (certificateFailure); callers add the node, as they do for any connection failure.
 */
export class ServerCertificateError extends Error {
  readonly code: string | undefined;

  constructor(
    readonly node: string,
    failure: string,
    cause: unknown,
  ) {
    super(failure, { cause });
    this.name = 'ServerCertificateError';
    this.code = (cause as { code?: string } | undefined)?.code;
  }
}

export function policyOf(node: NodeAddress): ServerTlsPolicy {
  return node.tls ?? DEFAULT_SERVER_TLS;
}

/**
 * pg_hba rejected the connection for lack of encryption (only `hostssl` lines match it): 28000,
 * "no pg_hba.conf entry for host ..., no encryption". The only answer libpq's `allow` retries with TLS.
 */
export function refusedForPlaintext(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return e?.code === '28000' && typeof e.message === 'string' && /no encryption/.test(e.message);
}

/**
 * A connected client to `node`, encrypted as its policy says. node-postgres knows only "TLS or
 * not", so libpq's two negotiating modes are done here by a second connection: `prefer` asks for
 * TLS and goes plaintext when the server answers 'N'; `allow` goes plaintext and asks for TLS
 * when pg_hba wants encryption. Neither retries after a certificate failure: a `prefer` TLS
 * attempt verifies nothing, and a refused certificate under verify-* must stay refused.
 * `prepare` runs on each new client before it connects (error listeners, say).
 */
export async function connectPg(node: NodeAddress, config: PgClientConfig, prepare?: (client: Client) => void): Promise<Client> {
  const policy = policyOf(node);
  try {
    return await attempt(node, config, pgSslOption(policy, node.host), prepare);
  } catch (err) {
    if (policy.mode === 'prefer' && (err as Error).message === SERVER_REFUSED_TLS) {
      return attempt(node, config, false, prepare);
    }
    if (policy.mode === 'allow' && refusedForPlaintext(err)) {
      const { host: _host, ...ssl } = tlsConnectOptions(policy, node.host);
      return attempt(node, config, ssl, prepare);
    }
    throw err;
  }
}

async function attempt(node: NodeAddress, config: PgClientConfig, ssl: ClientConfig['ssl'], prepare: ((client: Client) => void) | undefined): Promise<Client> {
  const client = new Client({ ...config, host: node.host, port: node.port, ssl });
  prepare?.(client);
  try {
    await client.connect();
    return client;
  } catch (err) {
    client.end().catch(() => undefined);
    const failure = certificateFailure(err, policyOf(node));
    throw failure !== undefined ? new ServerCertificateError(node.name, failure, err) : err;
  }
}

/** pg keeps the socket it talks on here: a TLSSocket once the server took the SSLRequest. */
interface ClientWithStream {
  connection?: { stream?: unknown };
}

/** Whether `client`'s connection is encrypted. */
export function isEncrypted(client: Client): boolean {
  return (client as unknown as ClientWithStream).connection?.stream instanceof TLSSocket;
}

/** What pgfloat's last connection to a node negotiated, for /status and the log. */
export type TlsState = 'encrypted' | 'plaintext' | 'failed' | 'unknown';

/**
 * Why a failed connection failed for TLS reasons, naming the check or the refusal; undefined when
 * it failed for another one (no server, a password...).
 */
export function tlsFailure(err: unknown, policy: ServerTlsPolicy): string | undefined {
  if (err instanceof ServerCertificateError) return err.message;
  const certificate = certificateFailure(err, policy);
  if (certificate !== undefined) return certificate;
  if ((err as Error | undefined)?.message === SERVER_REFUSED_TLS) {
    return `the server does not accept TLS (ssl = off), and serverTls.mode ${policy.mode} requires it`;
  }
  if (refusedForPlaintext(err)) {
    return `the server accepts only encrypted connections, and serverTls.mode ${policy.mode} connected without TLS: ${(err as Error).message}`;
  }
  return undefined;
}
