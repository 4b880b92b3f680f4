// The failover decision core: a pure state machine. Events in, actions out; no sockets, disks or clocks.

import type { ClusterState } from '../cluster/state';
import {
  allSeen,
  claimants,
  dropAndFence,
  failoverPhase,
  furthestAhead,
  isRejoinedStandby,
  log,
  persist,
  receiveLagOf,
  record,
  recordOutcome,
  sameSystem,
  setBlocked,
  startPromotion,
  unacknowledged,
  union,
} from './helpers';
import { absorbClusterChange, absorbCoordination, downVotes, follow, isFollower } from './coordination';
import { operatorCommand } from './operator';
import { finishDraining, switchoverEvent } from './switchover';
import type { Coordination, CoreState, FailoverAction, FailoverEvent, FailoverOptions, NodeReport, StepResult } from './types';

/** `coordination` is given when several instances share the state: it starts as a follower without a lease. */
export function initialState(names: readonly string[], cluster: ClusterState, now: number, coordination?: Coordination): CoreState {
  return {
    cluster,
    nodes: {},
    names: [...names],
    // A pgfloat restarted mid-failover still knows how far the old primary had written.
    lastPrimaryLsn: cluster.lastKnownPrimaryLsn,
    phase: cluster.primary === undefined ? { kind: 'bootstrap' } : { kind: 'steady' },
    persisting: false,
    roguePrimaries: [],
    demoted: [],
    rogueFencedAt: {},
    degenerateSince: cluster.fenced.length > 0 ? now : undefined,
    coordination,
    droppingSessions: [],
    appliedRevision: cluster.revision,
    now,
  };
}

export function step(state: CoreState, event: FailoverEvent, options: FailoverOptions): StepResult {
  const s: CoreState = structuredClone(state);
  s.now = Math.max(s.now, event.at);
  s.operatorAnswer = undefined;
  const out: FailoverAction[] = [];
  absorb(s, event, out, options);
  // With failover.enabled false the core only keeps the view the write gate judges from.
  if (options.automatic) reconcile(s, out, options);
  if (s.droppingSessions.length === 0) s.appliedRevision = s.cluster.revision;
  return { state: s, actions: out };
}

// ---- events -------------------------------------------------------------------------------

function absorb(s: CoreState, event: FailoverEvent, out: FailoverAction[], options: FailoverOptions): void {
  if (switchoverEvent(s, event, out, options)) return;
  switch (event.type) {
    case 'report': {
      const r = event.report;
      s.nodes[r.node] = r;
      if (r.node === s.cluster.primary && r.status === 'up' && r.inRecovery === false && r.currentLsn !== undefined) {
        s.lastPrimaryLsn = r.currentLsn;
      }
      return;
    }
    case 'tick':
      return;
    case 'sessions-dropped':
    case 'drained': {
      // A follower's drain of an announced switchover is outstanding session work like a drop.
      const at = s.droppingSessions.indexOf(event.node);
      if (at >= 0) s.droppingSessions = s.droppingSessions.filter((_, i) => i !== at);
      return;
    }
    case 'coordination':
      return absorbCoordination(s, event.coordination, out);
    case 'cluster-changed':
      return absorbClusterChange(s, event.cluster, out);
    case 'persisted':
      s.persisting = false;
      s.cluster = event.cluster;
      if (s.phase.kind === 'failover' && s.phase.step === 'fencing' && s.cluster.fenced.includes(s.phase.oldPrimary)) {
        startPromotion(s, out);
      } else if (s.phase.kind === 'failover' && s.phase.step === 'persisting' && s.cluster.primary === s.phase.target) {
        const { target, oldPrimary, startedAt, planned } = s.phase;
        recordOutcome(s, true, `${planned ? 'switched over' : 'failed over'} from ${oldPrimary} to ${target} at epoch ${s.cluster.epoch}`);
        s.phase = { kind: 'steady' };
        if (planned) s.demoted = [...s.demoted.filter((n) => n !== oldPrimary), oldPrimary];
        s.degenerateSince = s.now;
        s.heldBecause = undefined;
        log(out, 'info', `${planned ? 'switchover' : 'failover'}: complete, releasing held writes to the new primary`, {
          epoch: s.cluster.epoch,
          oldPrimary,
          newPrimary: target,
          durationMs: s.now - startedAt,
        });
      }
      return;
    case 'persist-failed':
      s.persisting = false;
      log(out, 'error', 'cluster state could not be persisted', { error: event.error, epoch: s.cluster.epoch });
      if (s.phase.kind === 'failover' && s.phase.step === 'fencing') fail(s, out, `persisting the fence of ${s.phase.oldPrimary} failed: ${event.error}`, options);
      // In the persisting step the promoted node must still be recorded: reconcile persists again.
      return;
    case 'promoted':
      if (s.phase.kind === 'failover' && s.phase.step === 'promoting' && s.phase.target === event.node) {
        s.phase.step = 'verifying';
        s.phase.synchronousLifted = event.synchronousLifted ?? null;
        log(out, 'info', 'failover: pg_promote() returned, waiting to see the node out of recovery on a new timeline', {
          epoch: s.cluster.epoch,
          node: event.node,
        });
      }
      return;
    case 'synchronous-restored':
      // Followers leave the shared state to the decider, which checks the primary itself.
      if (isFollower(s) || s.persisting || s.cluster.synchronousLifted?.node !== event.node) return;
      persist(s, out, { ...s.cluster, synchronousLifted: undefined });
      return;
    case 'promotion-failed':
      if (s.phase.kind === 'failover' && s.phase.target === event.node && (s.phase.step === 'promoting' || s.phase.step === 'verifying')) {
        fail(s, out, `promotion of ${event.node} failed: ${event.error}`, options);
      }
      return;
    case 'operator':
      if (isFollower(s)) {
        const decider = s.coordination?.deciderName;
        s.operatorAnswer = {
          accepted: false,
          message: `refused: this instance does not decide; ${decider === undefined ? 'no instance holds the election right now, try again' : `send it to the decider, ${decider}`}`,
        };
        return;
      }
      return operatorCommand(s, event.op, out, options, (request) =>
        considerFailover(s, out, 'operator failover', { ...request, forced: true }, options),
      );
    default:
      // A switchover's answer arriving after it ended (a timeout fired, say): nothing to do.
      return;
  }
}

// ---- decisions ----------------------------------------------------------------------------

function reconcile(s: CoreState, out: FailoverAction[], options: FailoverOptions): void {
  if (isFollower(s)) return follow(s, options);
  const phase = s.phase;
  switch (phase.kind) {
    case 'bootstrap':
      return bootstrap(s, out);
    case 'split-brain':
      if (allSeen(s) && claimants(s).length <= 1) {
        s.phase = { kind: 'bootstrap' };
        return bootstrap(s, out);
      }
      return;
    case 'failed':
      if (s.now < phase.retryAt) return;
      log(out, 'info', 'failover: retrying', { reason: phase.reason, epoch: s.cluster.epoch });
      s.phase = { kind: 'steady' };
      return steady(s, out, options);
    case 'steady':
      return steady(s, out, options);
    case 'failover':
      return progressFailover(s, out, options);
  }
}

function bootstrap(s: CoreState, out: FailoverAction[]): void {
  if (s.persisting) return;
  if (s.cluster.primary !== undefined) {
    s.phase = { kind: 'steady' };
    return;
  }
  // A node not yet seen might be a primary too: decide only when every node answered or is down.
  if (!allSeen(s)) return;
  const found = claimants(s);
  if (found.length === 1) {
    const r = s.nodes[found[0]!]!;
    s.lastPrimaryLsn = r.currentLsn ?? s.lastPrimaryLsn;
    persist(s, out, {
      ...s.cluster,
      epoch: s.cluster.epoch + 1,
      primary: r.node,
      systemIdentifier: r.systemIdentifier,
      timeline: r.timeline,
      history: [...s.cluster.history, record(s, 'adopted at first start', undefined, r.node)],
    });
    log(out, 'info', 'adopting the only node out of recovery as primary', { node: r.node, epoch: s.cluster.epoch + 1 });
  } else if (found.length > 1) {
    s.phase = { kind: 'split-brain', claimants: found };
    log(out, 'error', 'split brain at first start: several nodes claim primary and no state says which; routing no writes until `pgfloat adopt NODE`', {
      claimants: found,
    });
  }
}

function steady(s: CoreState, out: FailoverAction[], options: FailoverOptions): void {
  const primary = s.cluster.primary!;
  s.degenerateSince = s.cluster.fenced.length === 0 ? undefined : (s.degenerateSince ?? s.now);
  if (s.persisting) return;
  if (s.cluster.switchover !== undefined) {
    // Announced by a decider that went away before it fenced or rolled back: nothing is switching over now.
    persist(s, out, { ...s.cluster, switchover: undefined });
    log(out, 'warn', 'a switchover announced by an earlier decider did not finish: withdrawing it', { ...s.cluster.switchover, epoch: s.cluster.epoch });
    return;
  }

  for (const name of s.names) {
    if (name === primary) continue;
    const r = s.nodes[name];
    const claimsPrimary = r?.status === 'up' && r.inRecovery === false;
    const fenced = s.cluster.fenced.includes(name);
    if (!claimsPrimary) {
      s.roguePrimaries = s.roguePrimaries.filter((n) => n !== name);
      if (r?.status === 'down' || r?.inRecovery === true) s.demoted = s.demoted.filter((n) => n !== name);
      if (fenced && r && isRejoinedStandby(s, r) && !(s.cluster.operatorFenced ?? []).includes(name)) {
        persist(s, out, { ...s.cluster, fenced: s.cluster.fenced.filter((n) => n !== name) });
        log(out, 'info', 'fenced node follows the current primary in recovery: unfencing it as a standby', { node: name, epoch: s.cluster.epoch });
        return;
      }
      continue;
    }
    if (!fenced && s.cluster.fenced.includes(primary) && (r.timeline ?? 0) > (s.cluster.timeline ?? 0) && sameSystem(s, r)) {
      // An earlier failover promoted this node but did not record it (timeout, crash): finish it.
      s.phase = failoverPhase(s, options, primary, name, 'completing an unrecorded promotion', 'persisting');
      return progressFailover(s, out, options);
    }
    if (!fenced) {
      dropAndFence(s, out, name, `second primary beside ${primary}`);
      persist(s, out, { ...s.cluster, fenced: union(s.cluster.fenced, [name]) });
      log(out, 'error', 'a second node runs as primary: fencing it', { node: name, primary, epoch: s.cluster.epoch });
      return;
    }
    if (s.demoted.includes(name)) continue; // fenced and read-only by our own switchover: awaiting its rejoin
    if (!s.roguePrimaries.includes(name)) {
      s.roguePrimaries.push(name);
      s.rogueFencedAt[name] = s.now;
      dropAndFence(s, out, name, 'fenced node runs as primary');
      log(out, 'error', 'fenced node is running as a primary (rogue): applying the fencing action again', { node: name, epoch: s.cluster.epoch });
    } else if (s.now - (s.rogueFencedAt[name] ?? 0) >= options.retryIntervalMs) {
      // The fencing action may have failed, or been undone: apply it again while the node stays a primary.
      s.rogueFencedAt[name] = s.now;
      dropAndFence(s, out, name, 'fenced node still runs as primary');
    }
  }

  const r = s.nodes[primary];
  s.primaryDownSince = r?.status === 'down' ? (s.primaryDownSince ?? s.now) : undefined;
  if (s.cluster.fenced.includes(primary) || r?.status === 'down') {
    const reason = s.cluster.fenced.includes(primary) ? 'primary is fenced' : 'primary is down';
    const blocked = considerFailover(s, out, reason, { allowDataLoss: false, forced: false }, options);
    // A standby goes on hearing a primary that just died for up to standbyConfirmationMs (its last
    // message ages out, or its connection breaks), so while the witness blocks, the held writers
    // wait that long for the failover that is probably coming; the same holds while the other
    // pgfloat instances have not yet noticed what this one sees. Blocked for any other reason (lag,
    // no candidate), or past that window (pgfloat is cut off from a live primary), nothing is
    // coming for them, and they get their refusal now.
    const blockMayLiftSoon = blocked === 'may-change' && s.now - (s.primaryDownSince ?? s.now) < options.standbyConfirmationMs;
    if (s.phase.kind === 'steady' && s.heldBecause !== undefined && !blockMayLiftSoon) {
      s.heldBecause = undefined;
    }
    return;
  }
  setBlocked(s, out, undefined);
  // One missed heartbeat: new writers wait rather than land on a server that may be gone.
  if (r?.status === 'suspect' && s.heldBecause === undefined) {
    s.heldBecause = `primary ${primary} missed a heartbeat`;
  } else if (r?.status === 'up' && s.heldBecause !== undefined) {
    s.heldBecause = undefined;
  }
}

interface FailoverRequest {
  to?: string;
  allowDataLoss: boolean;
  forced: boolean;
}

/**
 * Starts a failover if it may; otherwise records why not, and says whether the block may lift
 * by itself soon ('may-change': the witness, or the other instances, have not yet seen what this
 * instance sees) or not ('other').
 */
function considerFailover(s: CoreState, out: FailoverAction[], reason: string, request: FailoverRequest, opts: FailoverOptions): 'may-change' | 'other' | undefined {
  const oldPrimary = s.cluster.primary!;
  const candidates = s.names
    .filter((n) => n !== oldPrimary && !s.cluster.fenced.includes(n) && !opts.notPromotable.includes(n) && (request.to === undefined || n === request.to))
    .map((n) => s.nodes[n])
    .filter((r): r is NodeReport => r?.status === 'up' && r.inRecovery === true && sameSystem(s, r))
    .sort(furthestAhead);
  const best = candidates[0];
  if (best === undefined) {
    setBlocked(s, out, `${reason}, and no healthy standby of this cluster to promote${request.to ? ` (asked for ${request.to})` : ''}`);
    return 'other';
  }
  // A primary whose fence is persisted was already given up on (by an operator, or by a failover
  // or switchover that a restart interrupted): the standby still hearing it is no reason to wait.
  const givenUp = s.cluster.fenced.includes(oldPrimary);
  const votes = downVotes(s, oldPrimary);
  if (!request.forced && !givenUp && votes?.majority === false) {
    setBlocked(s, out, `${reason} to this instance, but only ${votes.down} of ${votes.live} live pgfloat instances see it down: not failing over (a majority must)`);
    return 'may-change';
  }
  if (!request.forced && !givenUp && opts.requireStandbyConfirmation && best.seesPrimary === true) {
    setBlocked(s, out, `${reason} to pgfloat, but standby ${best.node} still receives WAL from it: not promoting (failover.requireStandbyConfirmation)`);
    return 'may-change';
  }
  const lag = receiveLagOf(s, best.node);
  if (!request.allowDataLoss) {
    if (lag === undefined) {
      setBlocked(s, out, `${reason}; the primary's last WAL position is unknown, so the data loss of promoting ${best.node} cannot be bounded: use failover --allow-data-loss`);
      return 'other';
    }
    if (lag > opts.maxLagBytes) {
      setBlocked(s, out, `${reason}; standby ${best.node} is ${lag} bytes behind the primary's last position, over failover.maxLagBytes (${opts.maxLagBytes}): use failover --allow-data-loss`);
      return 'other';
    }
  }
  setBlocked(s, out, undefined);
  s.phase = failoverPhase(s, opts, oldPrimary, best.node, reason, 'fencing');
  s.heldBecause = `failover from ${oldPrimary} to ${best.node}`;
  log(out, 'warn', 'failover: starting', { epoch: s.cluster.epoch, oldPrimary, target: best.node, reason, lagBytes: lag ?? null });
  dropAndFence(s, out, oldPrimary, `failover: ${reason}`);
  if (s.cluster.fenced.includes(oldPrimary)) startPromotion(s, out);
  else persist(s, out, { ...s.cluster, fenced: union(s.cluster.fenced, [oldPrimary]) });
  return undefined;
}

function progressFailover(s: CoreState, out: FailoverAction[], opts: FailoverOptions): void {
  const phase = s.phase;
  if (phase.kind !== 'failover') return;
  if (phase.step === 'draining') return finishDraining(s, out);
  if (phase.step === 'fencing' && !s.persisting && !s.cluster.fenced.includes(phase.oldPrimary)) {
    // The fence write lost a race with another writer: the store's state came back without it.
    persist(s, out, { ...s.cluster, fenced: union(s.cluster.fenced, [phase.oldPrimary]) });
    return;
  }
  if (phase.step === 'acknowledging') {
    const local = s.droppingSessions.includes(phase.oldPrimary);
    const waiting = unacknowledged(s);
    if (!local && waiting.length === 0) startPromotion(s, out);
    else if (s.now > phase.deadline) {
      const why = local
        ? `this instance's relay did not confirm in time that its sessions to ${phase.oldPrimary} are gone`
        : `pgfloat instances ${waiting.join(', ')} did not acknowledge the fence of ${phase.oldPrimary} in time (their leases stay valid but they do not apply the state)`;
      return fail(s, out, why, opts);
    }
    return;
  }
  if (phase.step === 'verifying') {
    const r = s.nodes[phase.target];
    if (r?.status === 'up' && r.inRecovery === false && (r.timeline ?? 0) > (phase.oldTimeline ?? 0)) {
      phase.step = 'persisting';
      log(out, 'info', 'failover: new primary verified out of recovery on a new timeline', { node: r.node, timeline: r.timeline, epoch: s.cluster.epoch });
    }
  }
  if (phase.step === 'persisting') {
    if (s.persisting) return;
    const r = s.nodes[phase.target];
    persist(s, out, {
      ...s.cluster,
      epoch: s.cluster.epoch + 1,
      primary: phase.target,
      timeline: r?.timeline ?? s.cluster.timeline,
      fenced: union(s.cluster.fenced.filter((n) => n !== phase.target), [phase.oldPrimary]),
      synchronousLifted: phase.synchronousLifted === undefined ? s.cluster.synchronousLifted : (phase.synchronousLifted ?? undefined),
      history: [...s.cluster.history, record(s, phase.reason, phase.oldPrimary, phase.target, phase.oldPrimaryLsn, r?.currentLsn)].slice(-50),
    });
    return;
  }
  if ((phase.step === 'promoting' || phase.step === 'verifying') && s.now > phase.deadline) {
    fail(s, out, `promotion of ${phase.target} did not complete within failover.promoteTimeoutMs (${opts.promoteTimeoutMs} ms)`, opts);
  }
}

function fail(s: CoreState, out: FailoverAction[], reason: string, opts: FailoverOptions): void {
  recordOutcome(s, false, reason);
  // A node promoted but not verified in time keeps its lifted setting: the record must not be lost with the phase.
  const lifted = s.phase.kind === 'failover' ? s.phase.synchronousLifted : undefined;
  if (lifted && !s.persisting) persist(s, out, { ...s.cluster, synchronousLifted: lifted });
  const retryAt = s.now + opts.retryIntervalMs;
  s.phase = { kind: 'failed', reason, retryAt };
  log(out, 'error', 'failover failed: writes stay refused until a retry succeeds', { reason, epoch: s.cluster.epoch, retryAt });
  s.heldBecause = undefined;
}
