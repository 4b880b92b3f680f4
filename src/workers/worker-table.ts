// The relay workers' bookkeeping: which one takes the next client, what each holds, when a crashed one restarts. No I/O, so it is tested alone.

import { addCounts, emptyCounts, type RelayCounts, type WorkerStatus } from '../proxy/relay-plane';

interface Slot {
  slot: number;
  pid: number | null;
  state: WorkerStatus['state'];
  /** Sockets handed to the process now in the slot. */
  dispatched: number;
  /** Of those, how many it reported having received, and its counts then. */
  received: number;
  counts: RelayCounts;
  restarts: number;
  /** When the slot's last process started, and how long the next restart waits. */
  startedAt: number;
  backoffMs: number;
}

/** A worker that dies within this of its start counts as crash-looping: its next restart waits longer. */
const STABLE_MS = 10_000;
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;

export class WorkerTable {
  private readonly slots: Slot[];

  constructor(count: number) {
    this.slots = Array.from({ length: count }, (_, i) => ({
      slot: i + 1,
      pid: null,
      state: 'stopped',
      dispatched: 0,
      received: 0,
      counts: emptyCounts(),
      restarts: 0,
      startedAt: 0,
      backoffMs: 0,
    }));
  }

  get size(): number {
    return this.slots.length;
  }

  starting(slot: number, pid: number | null, now: number): void {
    const s = this.at(slot);
    Object.assign(s, { pid, state: 'starting', dispatched: 0, received: 0, counts: emptyCounts(), startedAt: now });
  }

  ready(slot: number): void {
    this.at(slot).state = 'ready';
  }

  isReady(slot: number): boolean {
    return this.at(slot).state === 'ready';
  }

  readySlots(): number[] {
    return this.slots.filter((s) => s.state === 'ready').map((s) => s.slot);
  }

  /** Slots with a process (starting or ready). */
  liveSlots(): number[] {
    return this.slots.filter((s) => s.state !== 'stopped').map((s) => s.slot);
  }

  /**
   * The slot's process ended. Returns what it held (its sessions are gone with it) and, unless
   * `restart` is false, how long to wait before starting it again: at once after a long life,
   * doubling while it keeps dying young.
   */
  exited(slot: number, now: number, restart = true): { lost: RelayCounts; restartInMs: number | undefined } {
    const s = this.at(slot);
    const lost = s.counts;
    s.state = 'stopped';
    s.pid = null;
    s.counts = emptyCounts();
    s.dispatched = s.received = 0;
    if (!restart) return { lost, restartInMs: undefined };
    s.restarts++;
    s.backoffMs = now - s.startedAt >= STABLE_MS ? 0 : Math.min(MAX_BACKOFF_MS, Math.max(FIRST_BACKOFF_MS, s.backoffMs * 2));
    return { lost, restartInMs: s.backoffMs };
  }

  /** The ready worker holding the fewest sessions (sockets on their way to it included). */
  choose(): number | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) {
      if (s.state !== 'ready') continue;
      if (best === undefined || this.openIn(s) < this.openIn(best)) best = s;
    }
    return best?.slot;
  }

  dispatched(slot: number): void {
    this.at(slot).dispatched++;
  }

  /** A hand-over that failed: the socket never reached the worker. */
  undispatched(slot: number): void {
    const s = this.at(slot);
    s.dispatched = Math.max(s.received, s.dispatched - 1);
  }

  counted(slot: number, counts: RelayCounts, received: number): void {
    const s = this.at(slot);
    s.counts = counts;
    s.received = received;
  }

  countsOf(slot: number): RelayCounts {
    return this.at(slot).counts;
  }

  /** Sessions open in every worker, sockets on their way included: what connection limits count. */
  open(): number {
    return this.slots.reduce((n, s) => n + this.openIn(s), 0);
  }

  totals(): RelayCounts {
    const total = this.slots.reduce((sum, s) => addCounts(sum, s.counts), emptyCounts());
    total.open = this.open();
    return total;
  }

  status(): WorkerStatus[] {
    return this.slots.map((s) => ({
      slot: s.slot,
      pid: s.pid,
      state: s.state,
      sessions: this.openIn(s),
      restarts: s.restarts,
      relayedBytes: s.counts.clientToServerBytes + s.counts.serverToClientBytes,
    }));
  }

  private openIn(s: Slot): number {
    return s.counts.open + Math.max(0, s.dispatched - s.received);
  }

  private at(slot: number): Slot {
    const s = this.slots[slot - 1];
    if (s === undefined) throw new Error(`no relay worker slot ${slot}`);
    return s;
  }
}
