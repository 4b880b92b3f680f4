// The control process's side of proxy.workers: forks the relay workers, hands each accepted client to one, and gives every routing decision, drop and drain to all of them.

import { fork, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { lineWriter, type Logger } from '../log';
import { LocalRelay, type RelaySettings } from '../proxy/local-relay';
import type { RelayPlane, RelaySnapshot, TlsReloadReport, WorkerMetrics } from '../proxy/relay-plane';
import type { DrainResult } from '../proxy/session-registry';
import { SqlState } from '../protocol/codes';
import { SHUTTING_DOWN, type Refusal } from '../protocol/refusal';
import type { Router } from '../routing/router';
import type { ListenerKind, Routes } from '../routing/routes';
import { hookEnvironment } from '../system/environment';
import { isFromWorker, type FromWorker, type ToWorker } from './messages';
import { WorkerTable } from './worker-table';

const WORKER_MAIN = join(__dirname, 'worker-main.js');

const NO_WORKER: Refusal = {
  reason: 'no-relay-worker',
  code: SqlState.cannotConnectNow,
  message: 'pgfloat cannot take new connections right now: its relay workers are restarting',
};

/**
 * A worker that does not answer a drop within this (or a drain within this past the drain's own
 * deadline) is killed: its sessions end with it, which is the answer a fence needs. A healthy
 * worker answers within a millisecond; one that cannot is not relaying either.
 */
export const WORKER_ANSWER_MS = 2_000;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

export interface WorkerPoolHooks {
  /** A worker's server refused a connection: heartbeat the node now. */
  expedite(node: string): void;
  /** The number of live workers changed; `exited` when one ended unasked. */
  workers(live: number, exited: boolean): void;
  /** The auth query, for a worker's moving session (sessions.move). */
  rolePassword?(user: string, node: string): Promise<string | null>;
}

export interface WorkerPoolOptions {
  /** Where the refusals this process makes itself (no worker ready in time) are counted. */
  registry?: Registry;
}

interface Queued {
  listener: ListenerKind;
  socket: Socket;
  refusal: Refusal | undefined;
  timer: NodeJS.Timeout;
}

/** A message to a worker, without the request id the pool adds. */
type Request = ToWorker extends infer M ? (M extends { id: number } ? Omit<M, 'id'> : never) : never;

export class WorkerPool implements RelayPlane {
  readonly handsOff = true;
  private readonly table: WorkerTable;
  private readonly processes = new Map<number, ChildProcess>();
  /** Answers awaited, by request id; and the ids each slot owes, so its exit can settle them. */
  private readonly awaiting = new Map<number, (reply: FromWorker | undefined) => void>();
  private readonly owed = new Map<number, Set<number>>();
  private nextId = 0;
  /** Clients accepted while no worker was ready (all of them restarting). */
  private readonly queue: Queued[] = [];
  private readonly readyWatchers = new Set<() => void>();
  private stopping = false;
  private readonly writeLine: (line: string) => void;
  /**
   * Refuses, in this process, a client no worker could take in time: it still gets its startup
   * handshake and an ErrorResponse, never a bare close. It relays nothing.
   */
  private readonly refuser: LocalRelay;

  constructor(
    private readonly settings: RelaySettings,
    count: number,
    private readonly router: Router,
    private readonly logLevel: string,
    private readonly log: Logger,
    private readonly hooks: WorkerPoolHooks,
    options: WorkerPoolOptions = {},
  ) {
    this.table = new WorkerTable(count);
    this.writeLine = lineWriter(log);
    this.refuser = new LocalRelay(settings, router, options.registry ?? new Registry(), log, { onServerUnreachable: () => undefined });
  }

  get loops(): number {
    return this.table.size;
  }

  /** Forks every worker; resolves once all of them are ready to relay. */
  async launch(): Promise<void> {
    for (let slot = 1; slot <= this.table.size; slot++) this.spawn(slot);
    let watcher: (() => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        watcher = () => {
          if (this.table.readySlots().length === this.table.size) resolve();
        };
        this.readyWatchers.add(watcher);
        timer = setTimeout(
          () => reject(new Error(`relay workers not ready within ${START_TIMEOUT_MS} ms (${this.table.readySlots().length} of ${this.table.size})`)),
          START_TIMEOUT_MS,
        );
      });
    } finally {
      if (watcher) this.readyWatchers.delete(watcher);
      clearTimeout(timer);
    }
    this.log.info({ workers: this.table.size, pids: [...this.processes.values()].map((p) => p.pid) }, 'relay workers ready');
  }

  publish(routes: Routes): void {
    this.router.publish(routes);
    for (const child of this.processes.values()) this.send(child, { t: 'routes', routes });
  }

  open(): number {
    return this.table.open();
  }

  /** Hands the client to the least loaded ready worker, or keeps it until one is ready. */
  start(listener: ListenerKind, socket: Socket, refusal?: Refusal, attempts = 0): void {
    const slot = this.table.choose();
    const child = slot === undefined ? undefined : this.processes.get(slot);
    if (slot === undefined || child === undefined || this.stopping) return this.hold(listener, socket, refusal);
    this.table.dispatched(slot);
    const message: ToWorker = refusal === undefined ? { t: 'client', listener } : { t: 'client', listener, refusal };
    child.send(message, socket, { keepOpen: false }, (err) => {
      if (err === null || err === undefined) return;
      // The worker went away between the choice and the hand-over: the socket is still ours.
      this.table.undispatched(slot);
      if (!socket.destroyed && attempts < this.table.size) this.start(listener, socket, refusal, attempts + 1);
      else socket.destroy();
    });
  }

  async dropNode(node: string, refusal: Refusal): Promise<number> {
    const counts = await Promise.all(
      this.table.liveSlots().map(async (slot) => {
        const held = this.table.countsOf(slot).byNode[node] ?? 0;
        const reply = await this.ask(slot, { t: 'drop', node, refusal }, WORKER_ANSWER_MS, true);
        // No answer: the worker is gone, and with it the sessions it held.
        return reply?.t === 'dropped' ? reply.sessions : held;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  async drainNode(node: string, refusal: Refusal, drainMs: number): Promise<DrainResult> {
    const results = await Promise.all(
      this.table.liveSlots().map(async (slot) => {
        const held = this.table.countsOf(slot).byNode[node] ?? 0;
        const reply = await this.ask(slot, { t: 'drain', node, refusal, drainMs }, drainMs + WORKER_ANSWER_MS, true);
        return reply?.t === 'drained' ? { atBoundary: reply.atBoundary, cut: reply.cut } : { atBoundary: 0, cut: held };
      }),
    );
    return results.reduce((a, b) => ({ atBoundary: a.atBoundary + b.atBoundary, cut: a.cut + b.cut }), { atBoundary: 0, cut: 0 });
  }

  snapshot(): RelaySnapshot {
    return { ...this.table.totals(), workers: this.table.status() };
  }

  async workerMetrics(): Promise<WorkerMetrics[]> {
    const replies = await Promise.all(this.table.readySlots().map((slot) => this.ask(slot, { t: 'metrics' }, WORKER_ANSWER_MS, false)));
    return replies.flatMap((r) => (r?.t === 'metrics' ? [r.metrics] : []));
  }

  /**
   * This process (its refuser does TLS handshakes too) and then every live worker re-read the TLS
   * files; resolves once each worker acknowledged, or did not within WORKER_ANSWER_MS (reported
   * as not reloaded: a worker started later reads the files anew anyway).
   */
  async reloadTls(): Promise<TlsReloadReport[]> {
    const own = this.refuser.reloadOwnTls('control');
    const workers = await Promise.all(
      this.table.liveSlots().map(async (slot): Promise<TlsReloadReport> => {
        const reply = await this.ask(slot, { t: 'reload-tls' }, WORKER_ANSWER_MS, false);
        return reply?.t === 'tls-reloaded' ? reply.report : { loop: `worker ${slot}`, ok: false, reason: 'the worker did not acknowledge the reload in time' };
      }),
    );
    return [own, ...workers];
  }

  /** Every worker ends its sessions with `refusal` and exits; one that does not in time is killed. */
  async stop(refusal: Refusal): Promise<void> {
    this.stopping = true;
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      q.socket.resume();
      this.refuser.start(q.listener, q.socket, refusal);
    }
    await Promise.all(
      [...this.processes.values()].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            this.send(child, { t: 'stop', refusal });
          }),
      ),
    );
  }

  private spawn(slot: number): void {
    // No PGFLOAT_* variables (secrets): a worker gets only the relay's settings, over IPC.
    const child = fork(WORKER_MAIN, [], { env: hookEnvironment({}), stdio: ['ignore', 'pipe', 'inherit', 'ipc'], serialization: 'json' });
    // A worker's log lines go where this instance's go (stdout, or a test's capture), unchanged.
    if (child.stdout) createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', this.writeLine);
    this.processes.set(slot, child);
    this.table.starting(slot, child.pid ?? null, Date.now());
    this.hooks.workers(this.table.liveSlots().length, false);
    child.on('message', (message) => {
      if (isFromWorker(message)) this.onMessage(slot, child, message);
    });
    child.on('error', (err) => this.log.error({ slot, pid: child.pid, err: err.message }, 'relay worker error'));
    child.once('exit', (code, signal) => this.onExit(slot, child, code, signal));
    this.send(child, { t: 'init', slot, settings: this.settings, logLevel: this.logLevel, routes: this.router.current() });
  }

  private onMessage(slot: number, child: ChildProcess, message: FromWorker): void {
    switch (message.t) {
      case 'ready':
        this.table.ready(slot);
        this.log.debug({ slot, pid: child.pid }, 'relay worker ready');
        for (const watcher of [...this.readyWatchers]) watcher();
        this.flushQueue();
        return;
      case 'counts':
        this.table.counted(slot, message.counts, message.received);
        return;
      case 'expedite':
        this.hooks.expedite(message.node);
        return;
      case 'cancel':
        // Another worker's session may hold the key; only the one that does forwards it.
        for (const [other, process] of this.processes) if (other !== slot) this.send(process, message);
        return;
      case 'role-password': {
        const { id } = message;
        const lookup = this.hooks.rolePassword?.(message.user, message.node) ?? Promise.reject(new Error('sessions.move is off'));
        lookup.then(
          (rolpassword) => this.send(child, { t: 'role-password', id, rolpassword }),
          (err: Error) => this.send(child, { t: 'role-password', id, rolpassword: null, error: err.message }),
        );
        return;
      }
      case 'dropped':
      case 'drained':
      case 'metrics':
      case 'tls-reloaded':
        this.awaiting.get(message.id)?.(message);
        return;
      case 'stopped':
        return;
    }
  }

  private onExit(slot: number, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.processes.get(slot) !== child) return;
    this.processes.delete(slot);
    for (const id of [...(this.owed.get(slot) ?? [])]) this.awaiting.get(id)?.(undefined);
    const { lost, restartInMs } = this.table.exited(slot, Date.now(), !this.stopping);
    this.hooks.workers(this.table.liveSlots().length, !this.stopping);
    if (this.stopping) return;
    this.log.error(
      { slot, pid: child.pid, code, signal, lostSessions: lost.open, restartInMs },
      'relay worker ended unexpectedly: its sessions are lost; starting a new one',
    );
    setTimeout(() => {
      if (!this.stopping) this.spawn(slot);
    }, restartInMs ?? 0).unref();
  }

  /** Sends a request to one worker; resolves with its answer, or undefined once it is gone (killed at the deadline when `kill`). */
  private ask(slot: number, request: Request, timeoutMs: number, kill: boolean): Promise<FromWorker | undefined> {
    const child = this.processes.get(slot);
    if (child === undefined) return Promise.resolve(undefined);
    const id = ++this.nextId;
    let owed = this.owed.get(slot);
    if (owed === undefined) this.owed.set(slot, (owed = new Set()));
    const slotOwes = owed;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (!kill) return settle(undefined);
        this.log.error({ slot, pid: child.pid, request: request.t, timeoutMs }, 'relay worker did not answer in time: killing it, which ends its sessions');
        child.kill('SIGKILL');
        // Settled by the exit, once the process (and every socket it held) is gone.
      }, timeoutMs);
      const settle = (reply: FromWorker | undefined): void => {
        clearTimeout(timer);
        this.awaiting.delete(id);
        slotOwes.delete(id);
        resolve(reply);
      };
      this.awaiting.set(id, settle);
      slotOwes.add(id);
      this.send(child, { ...request, id } as ToWorker);
    });
  }

  private send(child: ChildProcess, message: ToWorker): void {
    if (!child.connected) return;
    // A failed send means the worker is going away; its exit settles whatever waits for it.
    child.send(message, (err) => {
      if (err) this.log.debug({ pid: child.pid, message: message.t, err: err.message }, 'message to relay worker not sent');
    });
  }

  private hold(listener: ListenerKind, socket: Socket, refusal: Refusal | undefined): void {
    if (this.stopping) {
      socket.resume();
      return this.refuser.start(listener, socket, refusal ?? SHUTTING_DOWN);
    }
    socket.on('error', () => undefined);
    const timer = setTimeout(() => {
      const at = this.queue.findIndex((q) => q.socket === socket);
      if (at >= 0) this.queue.splice(at, 1);
      this.log.warn({ waitedMs: this.settings.startupTimeoutMs }, 'no relay worker became ready for a waiting client: refusing it');
      // Accepted paused for a hand-over: it reads here instead.
      socket.resume();
      this.refuser.start(listener, socket, refusal ?? NO_WORKER);
    }, this.settings.startupTimeoutMs);
    this.queue.push({ listener, socket, refusal, timer });
  }

  private flushQueue(): void {
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      this.start(q.listener, q.socket, q.refusal);
    }
  }
}
