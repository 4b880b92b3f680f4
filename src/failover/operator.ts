// Operator commands to the failover core: adopt (first-start split brain), fence, unfence, forced failover, switchover.

import { answer, claimants, dropAndFence, log, persist, record, union } from './helpers';
import { requestSwitchover } from './switchover';
import type { CoreState, FailoverAction, FailoverOptions, OperatorCommand } from './types';

/**
 * An operator's command, decided like any other event. `requestFailover` is the core's own
 * failover decision, passed in so an operator's failover goes through the same checks.
 */
export function operatorCommand(
  s: CoreState,
  op: OperatorCommand,
  out: FailoverAction[],
  options: FailoverOptions,
  requestFailover: (request: { to?: string; allowDataLoss: boolean }) => void,
): void {
  if (s.persisting || s.phase.kind === 'failover') {
    log(out, 'warn', `operator ${op.command} refused: a state change is in progress`, { op });
    return answer(s, false, 'refused: a state change is in progress; try again');
  }
  switch (op.command) {
    case 'adopt': {
      const r = s.nodes[op.node];
      if (s.phase.kind !== 'bootstrap' && s.phase.kind !== 'split-brain') {
        log(out, 'warn', 'operator adopt refused: the cluster already has a primary; use failover', { node: op.node, primary: s.cluster.primary });
        return answer(s, false, `refused: the cluster already has a primary (${s.cluster.primary}); use failover`);
      }
      if (r?.status !== 'up' || r.inRecovery !== false) {
        log(out, 'warn', 'operator adopt refused: the node is not a reachable primary', { node: op.node });
        return answer(s, false, `refused: ${op.node} is not a reachable primary`);
      }
      const others = claimants(s).filter((n) => n !== op.node);
      s.lastPrimaryLsn = r.currentLsn ?? s.lastPrimaryLsn;
      for (const n of others) dropAndFence(s, out, n, `operator adopted ${op.node}`);
      persist(s, out, {
        ...s.cluster,
        epoch: s.cluster.epoch + 1,
        primary: op.node,
        systemIdentifier: r.systemIdentifier,
        timeline: r.timeline,
        fenced: union(s.cluster.fenced, others),
        history: [...s.cluster.history, record(s, 'operator adopt', undefined, op.node)],
      });
      log(out, 'warn', 'operator adopt: recording the primary', { node: op.node, fencing: others, epoch: s.cluster.epoch + 1 });
      s.phase = { kind: 'bootstrap' };
      return answer(s, true, `adopting ${op.node} as primary at epoch ${s.cluster.epoch + 1}`);
    }
    case 'fence':
      if (s.cluster.fenced.includes(op.node)) return answer(s, true, `${op.node} is already fenced`);
      dropAndFence(s, out, op.node, 'operator fence');
      persist(s, out, {
        ...s.cluster,
        fenced: union(s.cluster.fenced, [op.node]),
        operatorFenced: union(s.cluster.operatorFenced ?? [], [op.node]),
      });
      log(out, 'warn', 'operator fence', { node: op.node, epoch: s.cluster.epoch });
      return answer(s, true, `fencing ${op.node}`);
    case 'unfence':
      if (!s.cluster.fenced.includes(op.node)) return answer(s, true, `${op.node} is not fenced`);
      persist(s, out, {
        ...s.cluster,
        fenced: s.cluster.fenced.filter((n) => n !== op.node),
        operatorFenced: (s.cluster.operatorFenced ?? []).filter((n) => n !== op.node),
      });
      log(out, 'warn', 'operator unfence', { node: op.node, epoch: s.cluster.epoch });
      return answer(s, true, `unfencing ${op.node}`);
    case 'switchover':
      return requestSwitchover(s, op, out, options);
    case 'failover':
      if (s.phase.kind !== 'steady' && s.phase.kind !== 'failed') {
        log(out, 'warn', 'operator failover refused: no primary recorded yet', { phase: s.phase.kind });
        return answer(s, false, 'refused: no primary recorded yet (first start); use adopt');
      }
      s.phase = { kind: 'steady' };
      s.blocked = undefined;
      requestFailover({ to: op.to, allowDataLoss: op.allowDataLoss });
      const after = s.phase as CoreState['phase']; // considerFailover may have started one
      if (after.kind === 'failover') return answer(s, true, `failing over from ${after.oldPrimary} to ${after.target}`);
      return answer(s, false, `refused: ${s.blocked ?? 'no failover possible'}`);
  }
}
