// What the failover runner does to servers, by node name: fencing, promotion, a switchover's write stop and rollback.

import type { NodeAddress } from '../cluster/node';
import type { LiftedSynchronous } from '../cluster/state';
import type { ServerAdmin } from '../postgres/server-admin';
import type { Progress, ServerEffects } from './effects';
import type { Fencing } from './fencing';
import type { SynchronousGuard } from './synchronous-guard';

/** Stops and starts a node pgfloat manages (nodes[].dataDir or nodes[].commands). */
export interface ManagedControl {
  stop(progress: Progress): Promise<void>;
  start(progress: Progress): Promise<void>;
}

export interface ServerActionsDeps {
  nodes: ReadonlyMap<string, NodeAddress>;
  admin: ServerAdmin;
  fencing: Fencing;
  synchronous: SynchronousGuard;
  promoteTimeoutMs: number;
  /** Undefined for a node pgfloat does not manage. */
  control(node: string): ManagedControl | undefined;
  expedite(node: string): void;
}

export class ServerActions implements ServerEffects {
  /** Nodes shut down by the running switchover, so a rollback knows to start them again. */
  private readonly stoppedBySwitchover = new Set<string>();

  constructor(private readonly deps: ServerActionsDeps) {}

  fence(node: string): Promise<string> {
    return this.deps.fencing.apply(this.node(node));
  }

  promote(node: string): Promise<string> {
    return this.deps.admin.promote(this.node(node), this.deps.promoteTimeoutMs);
  }

  afterPromotion(node: string, names: string, current: LiftedSynchronous | undefined): Promise<LiftedSynchronous | undefined> {
    return this.deps.synchronous.afterPromotion(this.node(node), names, current);
  }

  awaitReplay(node: string, lsn: string, timeoutMs: number): Promise<void> {
    return this.deps.admin.awaitReplay(this.node(node), lsn, timeoutMs);
  }

  expedite(node: string): void {
    this.deps.expedite(node);
  }

  /**
   * A planned switchover's write stop: with fencing.action sql the node is made read-only and its
   * remaining client backends are terminated; a managed node whose fencing is a command is shut
   * down cleanly instead of running that command (a STONITH hook has no place in a drill); with
   * none, pgfloat's own sessions are already gone and new ones held. Resolves with the last WAL
   * position the standby must replay.
   */
  async stopWrites(name: string, target: string, progress: Progress): Promise<string> {
    const { admin, fencing } = this.deps;
    const { action, timeoutMs } = fencing.options;
    const control = this.deps.control(name);
    if (action === 'command' && control !== undefined) {
      await control.stop(progress);
      this.stoppedBySwitchover.add(name);
      // A clean shutdown sends the standby everything up to the shutdown checkpoint before it ends.
      return admin.receivedLsn(this.node(target), timeoutMs);
    }
    if (action !== 'none') progress(await fencing.apply(this.node(name)));
    try {
      return await admin.finalLsn(this.node(name), timeoutMs);
    } catch (err) {
      // A fencing command may have taken the node down: then what the standby received is all there is.
      if (action !== 'command') throw err;
      return admin.receivedLsn(this.node(target), timeoutMs);
    }
  }

  async resumeWrites(name: string, progress: Progress): Promise<void> {
    if (this.stoppedBySwitchover.delete(name)) await this.deps.control(name)!.start(progress);
    if (this.deps.fencing.options.action === 'sql') await this.deps.admin.resumeWrites(this.node(name), this.deps.fencing.options.timeoutMs);
  }

  private node(name: string): NodeAddress {
    const node = this.deps.nodes.get(name);
    if (node === undefined) throw new Error(`no configured node is named ${name}`);
    return node;
  }
}
