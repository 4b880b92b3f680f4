// Turns a node's health into the report the failover core decides on.

import type { NodeReport } from '../failover/types';
import type { NodeHealth } from './observation';

/**
 * `confirmationMs` is failover.standbyConfirmationMs: a standby counts as still hearing its
 * primary (the witness) while its WAL receiver streams and heard from it that recently.
 */
export function reportOf(health: NodeHealth, confirmationMs: number): NodeReport {
  const seen = health.lastReachable;
  return {
    node: health.node,
    status: health.status,
    inRecovery: seen?.inRecovery,
    systemIdentifier: seen?.systemIdentifier,
    timeline: seen?.timeline,
    currentLsn: seen?.currentLsn,
    receiveLsn: seen?.receiveLsn,
    replayLsn: seen?.replayLsn,
    seesPrimary:
      seen?.inRecovery === true
        ? seen.walReceiverStatus === 'streaming' && seen.walReceiverAgeMs !== undefined && seen.walReceiverAgeMs < confirmationMs
        : undefined,
  };
}
