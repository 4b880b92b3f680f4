// Tracks live client sessions by the node they are connected to, so one node's sessions can be dropped or drained at once.

import type { Refusal } from '../protocol/refusal';

export interface TrackedSession {
  readonly id: number;
  readonly node: string | undefined;
  readonly listener: string;
  /** Ends the session now; `leavingNode` when only its node is being left (fenced, drained), not pgfloat. */
  terminate(refusal: Refusal, leavingNode?: boolean): void;
  /** Ends the session at its next transaction boundary. */
  drain(refusal: Refusal): void;
}

export interface DrainResult {
  /** Sessions that closed by themselves or at a transaction boundary before the deadline. */
  atBoundary: number;
  /** Sessions still open at the deadline, or dropped while draining, and so terminated. */
  cut: number;
}

interface Drain {
  node: string;
  refusal: Refusal;
  open: Set<TrackedSession>;
  result: DrainResult;
  timer: NodeJS.Timeout | undefined;
  resolve(result: DrainResult): void;
}

export class SessionRegistry {
  private readonly all = new Set<TrackedSession>();
  private readonly byListener = new Map<string, number>();
  private readonly byNode = new Map<string, Set<TrackedSession>>();
  private readonly drains = new Set<Drain>();

  add(session: TrackedSession): void {
    if (this.all.has(session)) return;
    this.all.add(session);
    this.byListener.set(session.listener, (this.byListener.get(session.listener) ?? 0) + 1);
  }

  /** Called once the session has a server on `node`; a drain of `node` in progress takes it too. */
  attach(session: TrackedSession, node: string): void {
    let set = this.byNode.get(node);
    if (set === undefined) {
      set = new Set();
      this.byNode.set(node, set);
    }
    set.add(session);
    // Joins every drain of the node before being drained, since that may close it at once.
    let refusal: Refusal | undefined;
    for (const drain of this.drains) {
      if (drain.node !== node) continue;
      drain.open.add(session);
      refusal ??= drain.refusal;
    }
    if (refusal !== undefined) session.drain(refusal);
  }

  remove(session: TrackedSession): void {
    // Kept as sessions come and go: a worker reports its counts every few milliseconds.
    if (this.all.delete(session)) this.byListener.set(session.listener, this.byListener.get(session.listener)! - 1);
    if (session.node !== undefined) this.byNode.get(session.node)?.delete(session);
    for (const drain of this.drains) {
      if (!drain.open.delete(session)) continue;
      drain.result.atBoundary++;
      if (drain.open.size === 0) this.finish(drain);
    }
  }

  /** The session left its node without closing (it is being routed again): drains stop waiting for it. */
  detach(session: TrackedSession): void {
    if (session.node !== undefined) this.byNode.get(session.node)?.delete(session);
    for (const drain of this.drains) {
      if (drain.open.delete(session) && drain.open.size === 0) this.finish(drain);
    }
  }

  /** The session left its node at a transaction boundary to move elsewhere: drains count it as closed there. */
  leftAtBoundary(session: TrackedSession): void {
    if (session.node !== undefined) this.byNode.get(session.node)?.delete(session);
    for (const drain of this.drains) {
      if (!drain.open.delete(session)) continue;
      drain.result.atBoundary++;
      if (drain.open.size === 0) this.finish(drain);
    }
  }

  get size(): number {
    return this.all.size;
  }

  countByListener(): Map<string, number> {
    return new Map(this.byListener);
  }

  countOn(node: string): number {
    return this.byNode.get(node)?.size ?? 0;
  }

  countByNode(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const [node, set] of this.byNode) if (set.size > 0) counts[node] = set.size;
    return counts;
  }

  /** Ends every session on `node`; returns how many there were. */
  dropNode(node: string, refusal: Refusal): number {
    const sessions = [...(this.byNode.get(node) ?? [])];
    for (const session of sessions) this.cut(session, refusal, true);
    return sessions.length;
  }

  dropAll(refusal: Refusal): number {
    const sessions = [...this.all];
    for (const session of sessions) this.cut(session, refusal, false);
    return sessions.length;
  }

  /**
   * Closes every session on `node` at its next transaction boundary (see ClientSession.drain),
   * including sessions that attach to it meanwhile; those still open after `deadlineMs` are
   * terminated. Resolves once none is left.
   */
  drainNode(node: string, refusal: Refusal, deadlineMs: number): Promise<DrainResult> {
    const sessions = [...(this.byNode.get(node) ?? [])];
    if (sessions.length === 0) return Promise.resolve({ atBoundary: 0, cut: 0 });
    return new Promise((resolve) => {
      const drain: Drain = { node, refusal, open: new Set(sessions), result: { atBoundary: 0, cut: 0 }, timer: undefined, resolve };
      this.drains.add(drain);
      drain.timer = setTimeout(() => {
        for (const session of [...drain.open]) this.cut(session, refusal, true);
        // A session that somehow stays registered must not hold the caller past its deadline.
        if (this.drains.has(drain)) {
          drain.result.cut += drain.open.size;
          this.finish(drain);
        }
      }, deadlineMs);
      // Sessions already at a boundary close right here, and may finish the drain.
      for (const session of sessions) session.drain(refusal);
    });
  }

  /** Terminates a session, counting it as cut by any drain waiting for it. */
  private cut(session: TrackedSession, refusal: Refusal, leavingNode: boolean): void {
    for (const drain of this.drains) {
      if (drain.open.delete(session)) {
        drain.result.cut++;
        if (drain.open.size === 0) this.finish(drain);
      }
    }
    session.terminate(refusal, leavingNode);
  }

  private finish(drain: Drain): void {
    if (!this.drains.delete(drain)) return;
    clearTimeout(drain.timer);
    drain.open.clear();
    drain.resolve(drain.result);
  }
}
