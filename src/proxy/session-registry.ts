// Tracks live client sessions by the node they are connected to, so one node's sessions can be dropped at once.

import type { Refusal } from '../routing/routes';

export interface TrackedSession {
  readonly id: number;
  readonly node: string | undefined;
  readonly listener: string;
  terminate(refusal: Refusal): void;
}

export class SessionRegistry {
  private readonly all = new Set<TrackedSession>();
  private readonly byNode = new Map<string, Set<TrackedSession>>();

  add(session: TrackedSession): void {
    this.all.add(session);
  }

  /** Called once the session has a server on `node`. */
  attach(session: TrackedSession, node: string): void {
    let set = this.byNode.get(node);
    if (set === undefined) {
      set = new Set();
      this.byNode.set(node, set);
    }
    set.add(session);
  }

  remove(session: TrackedSession): void {
    this.all.delete(session);
    if (session.node !== undefined) this.byNode.get(session.node)?.delete(session);
  }

  get size(): number {
    return this.all.size;
  }

  countByListener(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const s of this.all) counts.set(s.listener, (counts.get(s.listener) ?? 0) + 1);
    return counts;
  }

  countOn(node: string): number {
    return this.byNode.get(node)?.size ?? 0;
  }

  /** Ends every session on `node`; returns how many there were. */
  dropNode(node: string, refusal: Refusal): number {
    const sessions = [...(this.byNode.get(node) ?? [])];
    for (const session of sessions) session.terminate(refusal);
    return sessions.length;
  }

  dropAll(refusal: Refusal): number {
    const sessions = [...this.all];
    for (const session of sessions) session.terminate(refusal);
    return sessions.length;
  }
}
