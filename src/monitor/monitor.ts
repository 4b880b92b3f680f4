// Heartbeats every node on a fixed interval and turns the answers into health verdicts.

import { EventEmitter } from 'node:events';
import type { Logger } from '../log';
import { NodeProbe, type ProbeCredentials, type ProbeTarget } from './node-probe';
import type { NodeHealth, NodeObservation } from './observation';
import type { HealthStatus } from '../cluster/node';

export interface MonitorOptions extends ProbeCredentials {
  intervalMs: number;
  timeoutMs: number;
  failuresBeforeDown: number;
}

export interface MonitorEvents {
  /** Every heartbeat result, with the node's health after it. */
  heartbeat: [health: NodeHealth, observation: NodeObservation];
}

export class Monitor extends EventEmitter<MonitorEvents> {
  private readonly probes: NodeProbe[];
  private readonly targets: ReadonlyMap<string, ProbeTarget>;
  private readonly health = new Map<string, NodeHealth>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Per node: ends the wait before its next heartbeat. */
  private readonly wakers = new Map<string, () => void>();
  /** Per node: the TLS failure last logged, so a refused certificate is logged when it changes, not every heartbeat. */
  private readonly tlsFailures = new Map<string, string>();
  private running = false;
  private stopped = false;

  constructor(
    targets: readonly ProbeTarget[],
    private readonly options: MonitorOptions,
    private readonly log: Logger,
  ) {
    super();
    this.probes = targets.map((t) => new NodeProbe(t, options, options.timeoutMs));
    this.targets = new Map(targets.map((t) => [t.name, t]));
    for (const t of targets) this.health.set(t.name, { node: t.name, status: 'unknown', consecutiveFailures: 0 });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const probe of this.probes) void this.loop(probe);
  }

  stop(): void {
    this.running = false;
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const probe of this.probes) probe.close();
  }

  /**
   * Heartbeats the node now instead of at its next interval: a client just failed to connect to
   * it, which is news worth checking at once. A heartbeat already under way is not doubled.
   */
  expedite(node: string): void {
    this.wakers.get(node)?.();
  }

  snapshot(): NodeHealth[] {
    return [...this.health.values()].map((h) => ({ ...h }));
  }

  /** Heartbeats every node now and resolves when all have answered (startup and tests use it). */
  async probeAll(): Promise<NodeHealth[]> {
    await Promise.all(this.probes.map((p) => this.probeOnce(p)));
    return this.snapshot();
  }

  private async loop(probe: NodeProbe): Promise<void> {
    while (this.running) {
      const started = Date.now();
      await this.probeOnce(probe);
      if (!this.running) return;
      // A fixed cadence from the start of each heartbeat, so a slow answer does not stretch the interval.
      const wait = Math.max(0, this.options.intervalMs - (Date.now() - started));
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.timers.delete(timer);
          this.wakers.delete(probe.target.name);
          resolve();
        };
        const timer = setTimeout(wake, wait);
        this.timers.add(timer);
        this.wakers.set(probe.target.name, wake);
      });
    }
  }

  private async probeOnce(probe: NodeProbe): Promise<void> {
    const observation = await probe.heartbeat();
    if (this.stopped) return;
    const previous = this.health.get(probe.target.name)!;
    const next = this.nextHealth(previous, observation);
    this.health.set(next.node, next);
    const wasInRecovery = previous.lastReachable?.inRecovery;
    if (observation.reachable && wasInRecovery !== undefined && observation.inRecovery !== wasInRecovery) {
      this.log.warn(
        { node: next.node, from: wasInRecovery ? 'standby' : 'primary', to: observation.inRecovery ? 'standby' : 'primary', timeline: observation.timeline },
        'node role changed',
      );
    }
    if (next.status !== previous.status) {
      const fields = { node: next.node, from: previous.status, to: next.status, error: observation.error };
      if (next.status === 'up') this.log.info(fields, 'node health changed');
      else this.log.warn(fields, 'node health changed');
    }
    this.logTls(observation);
    this.emit('heartbeat', next, observation);
  }

  private logTls(observation: NodeObservation): void {
    const { node, tls } = observation;
    if (tls === undefined || tls.state === 'unknown') return;
    const logged = this.tlsFailures.get(node);
    const target = this.targets.get(node);
    const fields = { node, host: target?.host, port: target?.port, mode: target?.tls?.mode ?? 'prefer' };
    if (tls.state === 'failed') {
      const failure = tls.error ?? 'TLS failed';
      if (failure === logged) return;
      this.tlsFailures.set(node, failure);
      // The node is unreachable to pgfloat until this changes: routing and failover treat it as down.
      this.log.error({ ...fields, reason: failure }, 'server TLS refused: pgfloat will not use this node');
    } else if (logged !== undefined) {
      this.tlsFailures.delete(node);
      this.log.info({ ...fields, tls: tls.state }, 'server TLS accepted again');
    }
  }

  private nextHealth(previous: NodeHealth, observation: NodeObservation): NodeHealth {
    if (observation.reachable) {
      return { node: previous.node, status: 'up', consecutiveFailures: 0, last: observation, lastReachable: observation };
    }
    const failures = previous.consecutiveFailures + 1;
    let status: HealthStatus = failures >= this.options.failuresBeforeDown ? 'down' : 'suspect';
    // A node never seen answering stays unknown until it is declared down.
    if (status === 'suspect' && previous.status === 'unknown') status = 'unknown';
    return { ...previous, status, consecutiveFailures: failures, last: observation };
  }
}
