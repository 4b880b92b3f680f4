// Planned switchover in the failover core: preflight, then drain, fence, stop writes, catch up, promote; rollback before promotion.

import { answer, failoverPhase, log, persist, recordOutcome, sameSystem, startPromotion, unacknowledged, union } from './helpers';
import type { CoreState, FailoverAction, FailoverEvent, FailoverOptions, NodeReport, OperatorCommand } from './types';
import { lagBytes } from '../cluster/lsn';

type SwitchoverCommand = Extract<OperatorCommand, { command: 'switchover' }>;

/** How long past the drain deadline the decider waits for the other instances' drains (their clocks and etcd's round trips). */
const PEER_DRAIN_GRACE_MS = 2_000;

/**
 * Checks everything a switchover needs before touching anything: the refusal names what is
 * wrong, so the operator can fix it and ask again. On acceptance new writers are held and the
 * old primary's sessions start draining.
 */
export function requestSwitchover(s: CoreState, op: SwitchoverCommand, out: FailoverAction[], opts: FailoverOptions): void {
  const refusal = preflight(s, op, opts);
  if (typeof refusal === 'string') {
    log(out, 'warn', `switchover refused: ${refusal}`, { epoch: s.cluster.epoch, to: op.to ?? null });
    return answer(s, false, `refused: ${refusal}`);
  }
  const { primary, target, lag } = refusal;
  const fields = { epoch: s.cluster.epoch, oldPrimary: primary, target: target.node, lagBytes: lag, forcedSlots: op.force ? op.logicalSlots : [] };
  s.heldBecause = `switchover from ${primary} to ${target.node}`;
  if (s.coordination !== undefined) {
    // The other instances learn of it from the shared state, and drain their own sessions too.
    s.phase = failoverPhase(s, opts, primary, target.node, 'switchover', 'announcing', true);
    const drainUntil = new Date(s.now + opts.switchover.drainMs).toISOString();
    persist(s, out, { ...s.cluster, switchover: { from: primary, to: target.node, drainUntil } });
    log(out, 'warn', `switchover: holding new writers; announcing the switchover to the other pgfloat instances`, fields);
  } else {
    s.phase = failoverPhase(s, opts, primary, target.node, 'switchover', 'draining', true);
    startDraining(s, out, opts, fields);
  }
  answer(s, true, `switching over from ${primary} to ${target.node}`);
}

function startDraining(s: CoreState, out: FailoverAction[], opts: FailoverOptions, fields: Record<string, unknown>): void {
  if (s.phase.kind !== 'failover') return;
  s.phase.step = 'draining';
  s.phase.drainDeadline = s.now + opts.switchover.drainMs;
  out.push({ type: 'drain-sessions', node: s.phase.oldPrimary, drainMs: opts.switchover.drainMs });
  log(out, 'warn', `switchover: holding new writers; moving or closing sessions on ${s.phase.oldPrimary} at transaction boundaries (up to ${opts.switchover.drainMs} ms)`, fields);
}

/** The switchover ends before anything changed on a server: writers go back to the old primary. */
function abandon(s: CoreState, out: FailoverAction[], why: string, fields: Record<string, unknown>): void {
  recordOutcome(s, false, `switchover abandoned: ${why}`);
  log(out, 'error', `switchover abandoned: ${why}; releasing held writes to the old primary`, fields);
  s.phase = { kind: 'steady' };
  s.heldBecause = undefined;
}

function preflight(s: CoreState, op: SwitchoverCommand, opts: FailoverOptions): string | { primary: string; target: NodeReport; lag: number } {
  if (s.phase.kind !== 'steady') return `no switchover while ${s.phase.kind === 'failed' ? 'a failed failover awaits its retry' : `the cluster is in ${s.phase.kind}`}`;
  const primary = s.cluster.primary;
  if (primary === undefined) return 'no primary recorded yet';
  if (s.cluster.fenced.includes(primary)) return `the primary ${primary} is fenced; use failover`;
  const p = s.nodes[primary];
  if (p?.status !== 'up' || p.inRecovery !== false) return `the primary ${primary} is not healthy (${p?.status ?? 'unknown'}); use failover`;
  if (op.to === primary) return `${op.to} is already the primary`;
  if (op.to !== undefined && opts.notPromotable.includes(op.to)) return `${op.to} is a reporting server (nodes[].promotable: false)`;
  const target = op.to !== undefined ? s.nodes[op.to] : bestStandby(s, primary, opts);
  const name = op.to ?? target?.node;
  if (target === undefined || name === undefined) return op.to !== undefined ? `${op.to} has not been seen yet` : 'no healthy, streaming standby to switch to';
  if (s.cluster.fenced.includes(name)) return `${name} is fenced; rejoin it first`;
  if (target.status !== 'up') return `${name} is ${target.status}`;
  if (target.inRecovery !== true) return `${name} is not a standby`;
  if (!sameSystem(s, target)) return `${name} belongs to another cluster (system identifier ${target.systemIdentifier ?? 'unknown'})`;
  if (target.seesPrimary !== true) return `${name} is not streaming from ${primary}`;
  // Replay, not receipt: the switchover waits for the standby to replay everything before promoting.
  const lag = lagBytes(p.currentLsn, target.replayLsn ?? target.receiveLsn);
  if (lag === undefined) return `the lag of ${name} is unknown`;
  if (lag > opts.switchover.maxLagBytes) return `${name} is ${lag} bytes behind ${primary}, over switchover.maxLagBytes (${opts.switchover.maxLagBytes})`;
  if (op.logicalSlots.length > 0 && !op.force) {
    return `logical replication slots on ${primary} would be lost: ${op.logicalSlots.join(', ')} (use --force to switch anyway and recreate them)`;
  }
  return { primary, target, lag };
}

function bestStandby(s: CoreState, primary: string, opts: FailoverOptions): NodeReport | undefined {
  return s.names
    .filter((n) => n !== primary && !s.cluster.fenced.includes(n) && !opts.notPromotable.includes(n))
    .map((n) => s.nodes[n])
    .find((r): r is NodeReport => r?.status === 'up' && r.inRecovery === true && r.seesPrimary === true && sameSystem(s, r));
}

/** The switchover's own events; false when `event` is not one (or not for the running switchover). */
export function switchoverEvent(s: CoreState, event: FailoverEvent, out: FailoverAction[], opts: FailoverOptions): boolean {
  const phase = s.phase;
  if (phase.kind !== 'failover' || !phase.planned) return false;
  const fields = { epoch: s.cluster.epoch, oldPrimary: phase.oldPrimary, target: phase.target };
  switch (event.type) {
    case 'drained':
      if (phase.step !== 'draining' || event.node !== phase.oldPrimary) return true;
      phase.drained = { atBoundary: event.atBoundary, cut: event.cut };
      finishDraining(s, out);
      return true;
    case 'writes-stopped':
      if (phase.step !== 'stopping-writes') return true;
      phase.step = 'catching-up';
      phase.oldPrimaryLsn = event.finalLsn;
      s.lastPrimaryLsn = event.finalLsn;
      out.push({ type: 'await-replay', node: phase.target, lsn: event.finalLsn, timeoutMs: opts.switchover.catchUpTimeoutMs });
      log(out, 'warn', `switchover: ${phase.oldPrimary} takes no more writes (last WAL position ${event.finalLsn}); waiting for ${phase.target} to replay it`, fields);
      return true;
    case 'stop-writes-failed':
      if (phase.step === 'stopping-writes') rollBack(s, out, `stopping writes on ${phase.oldPrimary} failed: ${event.error}`);
      return true;
    case 'caught-up':
      if (phase.step !== 'catching-up') return true;
      log(out, 'warn', `switchover: ${phase.target} replayed up to ${event.lsn}: nothing committed on ${phase.oldPrimary} is missing`, fields);
      startPromotion(s, out);
      return true;
    case 'catch-up-failed':
      if (phase.step === 'catching-up') rollBack(s, out, `${phase.target} did not catch up: ${event.error}`);
      return true;
    case 'writes-resumed':
      if (phase.step !== 'rolling-back') return true;
      if (event.error !== undefined) {
        log(out, 'error', `switchover rollback: ${phase.oldPrimary} could not be given its writes back: ${event.error}`, fields);
      }
      persist(s, out, { ...s.cluster, fenced: s.cluster.fenced.filter((n) => n !== phase.oldPrimary), switchover: undefined });
      return true;
    case 'persisted':
      s.persisting = false;
      s.cluster = event.cluster;
      if (phase.step === 'announcing') {
        if (s.cluster.switchover?.from === phase.oldPrimary) startDraining(s, out, opts, fields);
        else abandon(s, out, 'another write to the shared state came first', fields);
      } else if (phase.step === 'fencing' && s.cluster.fenced.includes(phase.oldPrimary)) {
        phase.step = 'stopping-writes';
        out.push({ type: 'stop-writes', node: phase.oldPrimary, target: phase.target });
        log(out, 'warn', `switchover: fence recorded; stopping writes on ${phase.oldPrimary}`, fields);
      } else if (phase.step === 'rolling-back' && !s.cluster.fenced.includes(phase.oldPrimary)) {
        recordOutcome(s, false, `switchover rolled back: ${phase.rollbackReason ?? 'unknown reason'}; ${phase.oldPrimary} stays primary`);
        log(out, 'error', `switchover rolled back: ${phase.oldPrimary} stays primary; releasing held writes to it`, { ...fields, reason: phase.rollbackReason });
        s.phase = { kind: 'steady' };
        s.heldBecause = undefined;
      } else {
        return false; // the shared failover steps (persisting the new primary) take it from here
      }
      return true;
    case 'persist-failed':
      if (phase.step !== 'fencing' && phase.step !== 'announcing') return false;
      s.persisting = false;
      // Nothing changed on any server yet: the switchover simply did not happen.
      abandon(s, out, `the ${phase.step === 'fencing' ? `fence of ${phase.oldPrimary}` : 'announcement'} could not be persisted: ${event.error}`, fields);
      return true;
    default:
      return false;
  }
}

/**
 * The fence follows once this instance's drain is done and every other live instance has applied
 * the announcement (its drain done too), or their grace ran out: a follower still draining then
 * drops what is left when the fence reaches it, which the promotion waits for anyway.
 */
export function finishDraining(s: CoreState, out: FailoverAction[]): void {
  const phase = s.phase;
  if (phase.kind !== 'failover' || phase.step !== 'draining' || phase.drained === undefined) return;
  const waiting = unacknowledged(s);
  if (waiting.length > 0 && s.now < (phase.drainDeadline ?? s.now) + PEER_DRAIN_GRACE_MS) return;
  phase.step = 'fencing';
  const { atBoundary, cut } = phase.drained;
  const peers = waiting.length > 0 ? `; instances ${waiting.join(', ')} had not finished draining` : '';
  log(out, 'warn', `switchover: sessions on ${phase.oldPrimary} moved or closed (${atBoundary} at a transaction boundary, ${cut} cut at the deadline)${peers}; recording the fence`, {
    epoch: s.cluster.epoch,
    oldPrimary: phase.oldPrimary,
    target: phase.target,
  });
  // The fence is persisted before the old primary changes: a pgfloat restarted from here
  // finds it fenced, and finishes the change as a failover instead of routing to it.
  persist(s, out, { ...s.cluster, fenced: union(s.cluster.fenced, [phase.oldPrimary]), switchover: undefined });
}

/** Before promotion nothing is lost by going back: the old primary gets its writes back, then its fence is lifted. */
function rollBack(s: CoreState, out: FailoverAction[], reason: string): void {
  if (s.phase.kind !== 'failover') return;
  s.phase.step = 'rolling-back';
  s.phase.rollbackReason = reason;
  out.push({ type: 'resume-writes', node: s.phase.oldPrimary });
  log(out, 'error', `switchover: rolling back: ${reason}`, { epoch: s.cluster.epoch, oldPrimary: s.phase.oldPrimary, target: s.phase.target });
}
