// Long operator operations (switchover, failover, rejoin): an id, step-by-step progress, and how each ended.

import { randomUUID } from 'node:crypto';
import type { Logger } from '../log';

export type OperationKind = 'switchover' | 'failover' | 'rejoin';
export type OperationState = 'running' | 'succeeded' | 'failed';

export interface OperationStep {
  at: string;
  message: string;
}

export interface OperationRecord {
  id: string;
  kind: OperationKind;
  /** The node the operation is about (the target standby, the node to rejoin), when one was named. */
  node: string | null;
  state: OperationState;
  startedAt: string;
  finishedAt: string | null;
  steps: OperationStep[];
  /** The last word: what was done, or why it failed. */
  result: string | null;
}

const KEEP = 20;

export class Operation {
  constructor(
    readonly record: OperationRecord,
    private readonly log: Logger,
  ) {}

  get running(): boolean {
    return this.record.state === 'running';
  }

  progress(message: string): void {
    if (!this.running) return;
    this.record.steps.push({ at: new Date().toISOString(), message });
    this.log.info({ operation: this.record.id, kind: this.record.kind }, message);
  }

  succeed(message: string): void {
    this.finish('succeeded', message);
  }

  fail(message: string): void {
    this.finish('failed', message);
  }

  private finish(state: OperationState, message: string): void {
    if (!this.running) return;
    this.record.steps.push({ at: new Date().toISOString(), message });
    this.record.state = state;
    this.record.result = message;
    this.record.finishedAt = new Date().toISOString();
    this.log[state === 'succeeded' ? 'info' : 'error']({ operation: this.record.id, kind: this.record.kind }, `${this.record.kind} ${state}: ${message}`);
  }
}

/** One long operation at a time: two would race for the same nodes (a rejoin during a switchover, say). */
export class Operations {
  private readonly recent: Operation[] = [];

  constructor(private readonly log: Logger) {}

  get current(): Operation | undefined {
    return this.recent.find((op) => op.running);
  }

  /** Starts an operation, or returns why not (another one is running). */
  begin(kind: OperationKind, node: string | undefined): Operation | string {
    const running = this.current;
    if (running !== undefined) return `refused: ${running.record.kind} ${running.record.id} is in progress`;
    const op = new Operation(
      { id: randomUUID(), kind, node: node ?? null, state: 'running', startedAt: new Date().toISOString(), finishedAt: null, steps: [], result: null },
      this.log,
    );
    this.recent.push(op);
    if (this.recent.length > KEEP) this.recent.splice(0, this.recent.length - KEEP);
    return op;
  }

  get(id: string): OperationRecord | undefined {
    return this.recent.find((op) => op.record.id === id)?.record;
  }

  list(): OperationRecord[] {
    return this.recent.map((op) => op.record);
  }
}
