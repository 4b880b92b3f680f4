// Whether a step ended a failover or switchover, and how: for counters and alerts outside the core.

import type { CoreState } from './types';

export function failoverFinished(previous: CoreState, next: CoreState): 'success' | 'failure' | undefined {
  if (previous.phase.kind !== 'failover') return undefined;
  if (next.phase.kind === 'steady') return 'success';
  if (next.phase.kind === 'failed') return 'failure';
  return undefined;
}
