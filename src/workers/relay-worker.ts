// A relay worker process (proxy.workers > 1): relays the clients the control process hands it, routing by the decisions it forwards.

import { Socket } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createLogger, type Logger } from '../log';
import { LocalRelay } from '../proxy/local-relay';
import type { RelayCounts } from '../proxy/relay-plane';
import { Router } from '../routing/router';
import { COUNTS_INTERVAL_MS, isToWorker, type FromWorker, type ToWorker } from './messages';

/** After a stop, sessions get this long to send their last ErrorResponse before the process exits. */
const STOP_LINGER_MS = 1_000;

class RelayWorker {
  private received = 0;
  private lastCounts = '';
  private readonly ticker: NodeJS.Timeout;

  constructor(
    private readonly relay: LocalRelay,
    private readonly router: Router,
    private readonly registry: Registry,
    private readonly connectTimeoutMs: number,
    private readonly slot: number,
    private readonly log: Logger,
  ) {
    // Counts go to the control process whenever they change: connection limits and /status are computed there.
    this.ticker = setInterval(() => this.reportCounts(), COUNTS_INTERVAL_MS);
  }

  handle(message: ToWorker, handle: unknown): void {
    switch (message.t) {
      case 'routes':
        this.router.publish(message.routes);
        return;
      case 'client':
        this.received++;
        // A client that hung up while being handed over arrives without its socket: nothing to relay.
        if (handle instanceof Socket) this.relay.start(message.listener, handle, message.refusal);
        return;
      case 'drop':
        void this.relay.dropNode(message.node, message.refusal).then((sessions) => {
          send({ t: 'dropped', id: message.id, sessions });
          this.reportCounts();
        });
        return;
      case 'drain':
        void this.relay.drainNode(message.node, message.refusal, message.drainMs).then(({ atBoundary, cut }) => {
          send({ t: 'drained', id: message.id, atBoundary, cut });
          this.reportCounts();
        });
        return;
      case 'cancel': {
        const target = this.relay.cancels.forward(message.processId, Buffer.from(message.secretKey, 'hex'), this.connectTimeoutMs);
        if (target !== undefined) this.log.debug({ pid: message.processId, node: target.node }, 'cancel request from another worker forwarded');
        return;
      }
      case 'metrics':
        void this.registry.getMetricsAsJSON().then((metrics) => send({ t: 'metrics', id: message.id, metrics }));
        return;
      case 'reload-tls': {
        const report = this.relay.reloadOwnTls(`worker ${this.slot}`);
        if (!report.ok) this.log.error({ reason: report.reason }, 'TLS reload failed: keeping the previous certificate');
        send({ t: 'tls-reloaded', id: message.id, report });
        return;
      }
      case 'stop':
        void this.stop(message);
        return;
      case 'role-password':
        answerRolePassword(message);
        return;
      case 'init':
        return;
    }
  }

  private async stop(message: Extract<ToWorker, { t: 'stop' }>): Promise<void> {
    clearInterval(this.ticker);
    await this.relay.stop(message.refusal);
    const deadline = Date.now() + STOP_LINGER_MS;
    while (this.relay.counts().open > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    send({ t: 'stopped' });
    process.exit(0);
  }

  private reportCounts(): void {
    const counts: RelayCounts = this.relay.counts();
    const text = JSON.stringify(counts) + this.received;
    if (text === this.lastCounts) return;
    this.lastCounts = text;
    send({ t: 'counts', counts, received: this.received });
  }
}

/** Role-password requests awaiting the control process's answer, by id. */
const rolePasswordRequests = new Map<number, { resolve(rolpassword: string | null): void; reject(err: Error): void }>();
let nextRequestId = 0;

function askRolePassword(user: string, node: string): Promise<string | null> {
  const id = ++nextRequestId;
  return new Promise((resolve, reject) => {
    rolePasswordRequests.set(id, { resolve, reject });
    send({ t: 'role-password', id, user, node });
  });
}

function answerRolePassword(message: Extract<ToWorker, { t: 'role-password' }>): void {
  const request = rolePasswordRequests.get(message.id);
  rolePasswordRequests.delete(message.id);
  if (message.error !== undefined) request?.reject(new Error(message.error));
  else request?.resolve(message.rolpassword);
}

function send(message: FromWorker): void {
  if (process.connected) process.send!(message);
}

/** The worker's entry: waits for its init, then serves until told to stop or until the control process is gone. */
export function runRelayWorker(): void {
  if (process.send === undefined) throw new Error('a relay worker runs only as a child of pgfloat (proxy.workers)');
  // A terminal's ^C reaches the whole process group: the control process stops the workers in order.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  // A hangup of the terminal, or a SIGHUP sent to the group for a reload, must not end a worker: reloads reach it over IPC.
  process.on('SIGHUP', () => undefined);
  // Without the control process there is no routing authority and no fence: relay nothing more.
  process.on('disconnect', () => process.exit(1));
  let worker: RelayWorker | undefined;
  process.on('message', (message: unknown, handle: unknown) => {
    if (!isToWorker(message)) return;
    if (message.t === 'init') {
      const base = createLogger(message.logLevel).child({ worker: message.slot });
      const log = base.child({ component: 'proxy' });
      const router = new Router({ fallbackToPrimary: message.settings.fallbackToPrimary, holdMs: message.settings.holdMs }, base.child({ component: 'router' }));
      router.publish(message.routes);
      const registry = new Registry();
      collectDefaultMetrics({ register: registry, prefix: 'pgfloat_' });
      const relay = new LocalRelay(message.settings, router, registry, log, {
        onServerUnreachable: (node) => send({ t: 'expedite', node }),
        cancelElsewhere: (processId, secretKey) => send({ t: 'cancel', processId, secretKey: secretKey.toString('hex') }),
        rolePassword: askRolePassword,
      });
      worker = new RelayWorker(relay, router, registry, message.settings.connectTimeoutMs, message.slot, log);
      send({ t: 'ready' });
      return;
    }
    worker?.handle(message, handle);
  });
}
