// One short-lived connection to a server as pgfloat's admin role, closed whatever the work does.

import type { Client } from 'pg';
import { connectPg } from './connect';
import type { NodeAddress } from '../cluster/node';

export interface AdminCredentials {
  user: string;
  password: string;
  database: string;
}

/**
 * The application_name of every admin connection: the `sql` fencing terminates every other client
 * backend on a node, and spares this one (and the monitor's) so pgfloat can go on working there.
 */
export const ADMIN_APPLICATION_NAME = 'pgfloat-admin';
/** The monitor's persistent heartbeat connection, spared the same way. */
export const MONITOR_APPLICATION_NAME = 'pgfloat-monitor';

export interface SessionLimits {
  connectTimeoutMs: number;
  /** Every query of the work must answer within this. */
  queryTimeoutMs: number;
}

/** The node did not take an admin connection at all (down, refusing, unreachable). */
export class NodeUnreachableError extends Error {
  constructor(node: NodeAddress, cause: Error) {
    super(`cannot connect to ${node.name} (${node.host}:${node.port}): ${cause.message}`);
    this.name = 'NodeUnreachableError';
  }
}

/** Runs `work` on a fresh admin connection to `node`; a failure to connect rejects with NodeUnreachableError. */
export async function withAdminSession<T>(
  node: NodeAddress,
  credentials: AdminCredentials,
  limits: SessionLimits,
  work: (client: Client) => Promise<T>,
): Promise<T> {
  const client = await connectPg(
    node,
    {
      user: credentials.user,
      password: credentials.password,
      database: credentials.database,
      application_name: ADMIN_APPLICATION_NAME,
      connectionTimeoutMillis: Math.max(1, limits.connectTimeoutMs),
      query_timeout: Math.max(1, limits.queryTimeoutMs),
    },
    // An error on the idle socket after the work (a server shutting down) must not become an uncaught exception.
    (c) => c.on('error', () => undefined),
  ).catch((err: Error) => {
    throw new NodeUnreachableError(node, err);
  });
  try {
    return await work(client);
  } finally {
    client.end().catch(() => undefined);
  }
}
