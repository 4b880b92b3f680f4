// Why pgfloat refuses or ends a client session on its own account: the ErrorResponse it sends, with a reason label for logs and metrics.

import { SqlState, type SqlStateCode } from './codes';

export type RefusalReason =
  | 'no-primary'
  | 'failover-in-progress'
  | 'failover-failed'
  /** Several instances: this one lost its etcd lease. */
  | 'no-lease'
  | 'fenced'
  | 'split-brain'
  | 'no-standby'
  | 'backend-unreachable'
  | 'too-many-connections'
  | 'startup-timeout'
  | 'protocol-violation'
  | 'unsupported-protocol'
  | 'shutting-down'
  | 'switchover'
  /** A SCRAM login with channel-binding support that pgfloat cannot sign again for a TLS server. */
  | 'channel-binding'
  /** proxy.workers: no relay worker was ready to take the client in time (all of them restarting). */
  | 'no-relay-worker'
  /** A TLS handshake failed or was not admitted (ALPN, client certificate): closed without a word, as PostgreSQL does. */
  | 'tls-refused';

export interface Refusal {
  reason: RefusalReason;
  code: SqlStateCode;
  message: string;
  detail?: string;
  hint?: string;
  /** PostgreSQL only logs this one (COMMERROR) and closes without a word; so does pgfloat. */
  silent?: boolean;
  /** The client asked for protocol 1.x or 2.x: PostgreSQL answers in that protocol's error format, 'E' and a line of text. */
  protocol2?: boolean;
  /** A newer 3.x minor version or `_pq_.` options were asked for: PostgreSQL sends NegotiateProtocolVersion, naming these options, before the error. */
  negotiate?: readonly string[];
}

/** A new client while pgfloat stops. */
export const SHUTTING_DOWN: Refusal = { reason: 'shutting-down', code: SqlState.cannotConnectNow, message: 'pgfloat is shutting down' };
