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
  /** proxy.workers: no relay worker was ready to take the client in time (all of them restarting). */
  | 'no-relay-worker';

export interface Refusal {
  reason: RefusalReason;
  code: SqlStateCode;
  message: string;
  detail?: string;
}

/** A new client while pgfloat stops. */
export const SHUTTING_DOWN: Refusal = { reason: 'shutting-down', code: SqlState.cannotConnectNow, message: 'pgfloat is shutting down' };
