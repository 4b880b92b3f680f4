// This instance among the others through etcd: its lease, its published view, the decider election, and the watch on the shared keys.

import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, Lease, Watcher } from 'etcd3';
import type { Logger } from '../log';
import type { Coordination, PeerView } from '../failover/types';
import type { ClusterState } from '../cluster/state';
import { etcdKeys, parseState } from './etcd-store';
import type { HealthStatus } from '../cluster/node';

/** What each instance publishes under its lease at `<prefix>/instances/<name>`. */
export interface InstanceRecord {
  name: string;
  /** Its admin API, for operators and for `pgfloat status`. */
  admin?: string;
  view: Record<string, HealthStatus>;
  appliedRevision: number;
  startedAt: string;
}

export interface InstanceStatus extends InstanceRecord {
  self: boolean;
  decider: boolean;
}

export interface CoordinatorOptions {
  prefix: string;
  instance: string;
  leaseTtlSeconds: number;
}

/**
 * The lease is counted from when a keepalive was sent, not when its answer came back: etcd
 * counts from when it received it, which is later, so this instance gives up its writes
 * before the others can consider it gone. The margin covers clocks running at different rates.
 */
const LEASE_MARGIN_MS = 500;
const CHECK_MS = 100;
const RETRY_MS = 500;
/**
 * Keepalives are sent four times per TTL, each allowed a quarter TTL, and a failed one is tried
 * again at once. etcd3's own keepalive stream can wait out a whole etcd leader election (a
 * follower forwards the keepalive to the dead leader until its request timeout), which under load
 * took longer than the lease; short attempts reach the new leader as soon as there is one, and
 * etcd's new leader extends every lease, so none expires in between.
 */
const KEEPALIVES_PER_TTL = 4;
const KEEPALIVE_RETRY_MS = 50;

export declare interface EtcdCoordinator {
  on(event: 'coordination', listener: (c: Coordination) => void): this;
  on(event: 'cluster', listener: (c: ClusterState) => void): this;
}

export class EtcdCoordinator extends EventEmitter {
  private readonly keys: ReturnType<typeof etcdKeys>;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private validUntil = 0;
  private connected = false;
  private disconnectedReason = 'not yet connected to etcd';
  private decider: { name: string; lease: string } | undefined;
  private readonly peers = new Map<string, InstanceRecord>();
  private record: InstanceRecord;
  private published = '';
  private publishing = false;
  private watcher: Watcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private connecting: Promise<void> | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly options: CoordinatorOptions,
    private readonly log: Logger,
  ) {
    super();
    this.keys = etcdKeys(options.prefix);
    this.record = { name: options.instance, view: {}, appliedRevision: 0, startedAt: new Date().toISOString() };
  }

  /** Connects, waiting at most `waitMs`; an instance that cannot reach etcd still starts, routing no writes. */
  async start(waitMs: number): Promise<void> {
    this.timer = setInterval(() => this.checkLease(), CHECK_MS);
    this.timer.unref();
    this.connecting = this.connect();
    await Promise.race([this.connecting, new Promise((resolve) => setTimeout(resolve, waitMs).unref())]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.watcher?.cancel().catch(() => undefined);
    // Revoking tells the others at once that this instance is gone, instead of after its lease.
    await this.lease?.revoke().catch(() => undefined);
    this.client.close();
  }

  /** The lease to write the cluster state with: only while this instance is the decider. */
  writerLease(): string | undefined {
    return this.isDecider() ? this.leaseId : undefined;
  }

  setAdmin(url: string): void {
    this.record = { ...this.record, admin: url };
    void this.flush();
  }

  /** Publishes this instance's view and applied revision when they changed. */
  publish(view: Record<string, HealthStatus>, appliedRevision: number): void {
    this.record = { ...this.record, view, appliedRevision };
    void this.flush();
  }

  instances(): InstanceStatus[] {
    const all = [this.record, ...this.peers.values()];
    return all
      .map((r) => ({ ...r, self: r.name === this.options.instance, decider: this.decider?.name === r.name }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  coordination(): Coordination {
    const peers: Record<string, PeerView> = {};
    for (const [name, r] of this.peers) peers[name] = { view: r.view, appliedRevision: r.appliedRevision };
    return {
      decider: this.isDecider(),
      // Cut off, this instance does not know who decides now.
      deciderName: this.connected ? this.decider?.name : undefined,
      connected: this.connected,
      disconnectedReason: this.connected ? undefined : this.disconnectedReason,
      peers,
    };
  }

  private isDecider(): boolean {
    return this.connected && this.leaseId !== undefined && this.decider?.lease === this.leaseId;
  }

  private async connect(): Promise<void> {
    while (!this.stopped && !this.connected) {
      const lease = this.client.lease(this.options.leaseTtlSeconds, { autoKeepAlive: false });
      lease.on('lost', (err) => this.leaseLost(lease, `etcd lease lost: ${err.message}`));
      try {
        const askedAt = Date.now();
        const id = await lease.grant();
        this.lease = lease;
        this.leaseId = id;
        this.validUntil = askedAt + this.options.leaseTtlSeconds * 1000 - LEASE_MARGIN_MS;
        await this.watch();
        await this.reload();
        this.published = '';
        await this.flush();
        await this.campaign();
        this.connected = true;
        void this.keepAlive(lease);
        this.log.info({ instance: this.options.instance, lease: id, peers: [...this.peers.keys()], decider: this.decider?.name }, 'connected to etcd');
        this.changed();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'cannot reach etcd; retrying');
        lease.release();
        if (this.lease === lease) this.lease = this.leaseId = undefined;
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
    this.connecting = undefined;
  }

  private async keepAlive(lease: Lease): Promise<void> {
    const slice = (this.options.leaseTtlSeconds * 1000) / KEEPALIVES_PER_TTL;
    while (lease === this.lease && !this.stopped) {
      const sentAt = Date.now();
      try {
        const res = await lease.keepaliveOnce({ deadline: sentAt + slice });
        // etcd counts the TTL from when it received this keepalive, which is after sentAt.
        if (lease === this.lease) this.validUntil = Math.max(this.validUntil, sentAt + Number(res.TTL) * 1000 - LEASE_MARGIN_MS);
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, sentAt + slice - Date.now())));
      } catch {
        // An expired lease comes back as 'lost'; anything else is tried again until checkLease gives up.
        await new Promise((resolve) => setTimeout(resolve, KEEPALIVE_RETRY_MS));
      }
    }
  }

  private checkLease(): void {
    if (this.connected && Date.now() > this.validUntil && this.lease !== undefined) {
      this.leaseLost(this.lease, `could not renew the etcd lease within its ${this.options.leaseTtlSeconds} s`);
    }
  }

  private leaseLost(lease: Lease, reason: string): void {
    if (lease !== this.lease || this.stopped) return;
    lease.release();
    this.lease = this.leaseId = undefined;
    this.connected = false;
    this.disconnectedReason = reason;
    this.log.error({ instance: this.options.instance, reason }, 'lost the etcd lease');
    this.changed();
    this.connecting ??= this.connect();
  }

  private async watch(): Promise<void> {
    if (this.watcher !== undefined) return;
    // The watch outlives leases: etcd3 resumes it after a disconnection from the last revision seen.
    const watcher = await this.client.watch().prefix(`${this.options.prefix}/`).create();
    watcher.on('put', (kv) => this.onKey(kv.key.toString(), kv));
    watcher.on('delete', (kv) => this.onKey(kv.key.toString(), undefined));
    watcher.on('error', (err) => {
      // A watch etcd cancelled (its revision was compacted while disconnected) never resumes: start over.
      this.log.warn({ err: err.message }, 'etcd watch failed; watching again and reloading the shared state');
      if (this.watcher !== watcher) return;
      this.watcher = undefined;
      void watcher.cancel().catch(() => undefined);
      this.watch()
        .then(() => this.reload())
        // Without a watch this instance would not hear of a fence: it gives up its lease and starts over.
        .catch((e: Error) => this.lease && this.leaseLost(this.lease, `could not watch etcd again: ${e.message}`));
    });
    this.watcher = watcher;
  }

  /** Reads every shared key, for what happened while this instance was not watching. */
  private async reload(): Promise<void> {
    const response = await this.client.getAll().prefix(`${this.options.prefix}/`).exec();
    this.peers.clear();
    this.decider = undefined;
    for (const kv of response.kvs) this.onKey(kv.key.toString(), kv, false);
    this.changed();
  }

  private onKey(key: string, kv: IKeyValue | undefined, notify = true): void {
    if (key === this.keys.state) {
      if (kv !== undefined) {
        try {
          this.emit('cluster', parseState(kv.value, Number(kv.version), key));
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'ignoring an unreadable cluster state in etcd');
        }
      }
      return;
    }
    if (key === this.keys.decider) {
      this.decider = kv === undefined ? undefined : { name: kv.value.toString(), lease: kv.lease };
      if (kv === undefined && this.connected) void this.campaign().catch((err: Error) => this.log.warn({ err: err.message }, 'could not run for decider'));
    } else if (key.startsWith(this.keys.instances)) {
      const name = key.slice(this.keys.instances.length);
      if (name === this.options.instance) return;
      if (kv === undefined) this.peers.delete(name);
      else {
        try {
          this.peers.set(name, JSON.parse(kv.value.toString()) as InstanceRecord);
        } catch {
          this.log.warn({ key }, 'ignoring an unreadable instance record in etcd');
        }
      }
    } else return;
    if (notify) this.changed();
  }

  /** Takes the decider key if nobody holds it; it lives as long as this instance's lease. */
  private async campaign(): Promise<void> {
    const id = this.leaseId;
    if (id === undefined) return;
    const result = await this.client
      .if(this.keys.decider, 'Create', '==', 0)
      .then(this.client.put(this.keys.decider).value(this.options.instance).lease(id))
      .else(this.client.get(this.keys.decider))
      .commit();
    if (result.succeeded) this.decider = { name: this.options.instance, lease: id };
    else {
      const kv = result.responses[0]?.response_range?.kvs[0];
      this.decider = kv === undefined ? undefined : { name: kv.value.toString(), lease: kv.lease };
    }
    this.changed();
  }

  private async flush(): Promise<void> {
    if (this.publishing || this.leaseId === undefined) return;
    this.publishing = true;
    try {
      for (;;) {
        const text = JSON.stringify(this.record);
        const id = this.leaseId;
        if (text === this.published || id === undefined) return;
        await this.client.put(`${this.keys.instances}${this.options.instance}`).value(text).lease(id);
        this.published = text;
      }
    } catch (err) {
      // Retried at the next change; a lease that cannot be kept is noticed by checkLease.
      this.log.warn({ err: (err as Error).message }, 'could not publish this instance to etcd');
    } finally {
      this.publishing = false;
    }
  }

  private changed(): void {
    this.emit('coordination', this.coordination());
  }
}
