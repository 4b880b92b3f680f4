// The shared state store: the cluster state as one etcd key, changed only by transactions that compare its version.

import type { Etcd3 } from 'etcd3';
import { emptyState, type ClusterState } from '../cluster/state';
import type { StateStore } from './store';

/** Keys under the configured prefix. */
export function etcdKeys(prefix: string): { state: string; decider: string; instances: string } {
  return { state: `${prefix}/state`, decider: `${prefix}/decider`, instances: `${prefix}/instances/` };
}

/**
 * The state's revision is the etcd key's version, which etcd raises by one at every write, so a
 * compare of the version is a compare of the revision, and through it of the epoch: two
 * instances can never both advance either. Writes are also conditional on the writer holding
 * the decider key with its current lease (`writerLease`), so an instance that lost the election
 * cannot write even a state it had read correctly.
 */
export class EtcdStateStore implements StateStore {
  private readonly keys: ReturnType<typeof etcdKeys>;

  constructor(
    private readonly client: Etcd3,
    prefix: string,
    private readonly writerLease: () => string | undefined,
  ) {
    this.keys = etcdKeys(prefix);
  }

  async load(): Promise<ClusterState> {
    const response = await this.client.get(this.keys.state).exec();
    const kv = response.kvs[0];
    if (kv === undefined) return emptyState();
    return parseState(kv.value, Number(kv.version), this.keys.state);
  }

  async compareAndSet(expectedRevision: number, next: Omit<ClusterState, 'revision'>): Promise<ClusterState | undefined> {
    const lease = this.writerLease();
    if (lease === undefined) throw new Error('this instance is not the decider (it holds no decider lease): it may not write the cluster state');
    const { revision: _ignored, ...body } = next as ClusterState;
    const result = await this.client
      .if(this.keys.state, 'Version', '==', expectedRevision)
      .and(this.keys.decider, 'Lease', '==', lease)
      .then(this.client.put(this.keys.state).value(JSON.stringify(body)))
      .commit();
    if (!result.succeeded) return undefined;
    return { ...next, revision: expectedRevision + 1 };
  }
}

export function parseState(value: Buffer, version: number, key: string): ClusterState {
  try {
    return { ...emptyState(), ...(JSON.parse(value.toString('utf8')) as Partial<ClusterState>), revision: version };
  } catch (err) {
    throw new Error(`cluster state at etcd key ${key} is not valid JSON: ${(err as Error).message}`);
  }
}
