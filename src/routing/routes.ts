// The routing decision pgfloat publishes after every failover-core step: the core's write gate, and the standbys reporting clients may use.

import { lagBytes } from '../cluster/lsn';
import { writeGate } from '../failover/write-gate';
import type { CoreState, FailoverOptions, NodeReport } from '../failover/types';
import type { Refusal } from '../protocol/refusal';

export type ListenerKind = 'readWrite' | 'readOnly';

/** One decision, plain data: the same value could be sent to every relay worker. */
export interface Routes {
  /** The only node read-write clients may reach: the failover core's write gate, never second-guessed here. */
  primary: string | undefined;
  /** Set while new read-write clients wait for a primary instead of being refused: why. */
  heldBecause: string | undefined;
  /** Healthy standbys of this cluster, in node order, that read-only clients may reach. */
  standbys: string[];
  /** Set when read-write clients must be refused (also once a hold runs out), saying why. */
  readWriteRefusal: Refusal | undefined;
  /** Every unfenced node that currently claims to be a primary (more than one: split brain). */
  claimants: string[];
}

export interface RouteOptions extends Pick<FailoverOptions, 'automatic'> {
  /** readOnly.maxLagBytes: a standby further behind (in replayed WAL) serves no reporting client. */
  maxLagBytes: number | null;
}

export function noRoutes(): Routes {
  return { primary: undefined, heldBecause: undefined, standbys: [], readWriteRefusal: undefined, claimants: [] };
}

export function computeRoutes(core: CoreState, options: RouteOptions): Routes {
  const gate = writeGate(core, options);
  const primary = gate.node === undefined ? undefined : core.nodes[gate.node];
  const standbys = core.names.filter((name) => {
    const r = core.nodes[name];
    return (
      r !== undefined &&
      (r.status === 'up' || r.status === 'suspect') &&
      r.inRecovery === true &&
      !core.cluster.fenced.includes(name) &&
      (core.cluster.systemIdentifier === undefined || r.systemIdentifier === core.cluster.systemIdentifier) &&
      (primary === undefined || r.systemIdentifier === primary.systemIdentifier) &&
      withinLag(r, primary, options.maxLagBytes)
    );
  });
  return { primary: gate.node, heldBecause: gate.heldBecause, standbys, readWriteRefusal: gate.refusal, claimants: gate.claimants };
}

/** Replay lag: what a reporting client reads is what the standby has replayed. */
function withinLag(standby: NodeReport, primary: NodeReport | undefined, maxLagBytes: number | null): boolean {
  if (maxLagBytes === null) return true;
  const lag = primary?.currentLsn !== undefined ? lagBytes(primary.currentLsn, standby.replayLsn) : lagBytes(standby.receiveLsn, standby.replayLsn);
  return lag !== undefined && lag <= maxLagBytes;
}

/** Whether anything a client's route depends on changed; a hold starting or ending is told apart by the Router. */
export function sameRoutes(a: Routes, b: Routes): boolean {
  return (
    a.primary === b.primary &&
    a.standbys.join() === b.standbys.join() &&
    a.claimants.join() === b.claimants.join() &&
    a.readWriteRefusal?.reason === b.readWriteRefusal?.reason
  );
}
