// Picks the cluster state store from the config: the embedded file store, or etcd shared by several instances.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { rootCertificates } from 'node:tls';
import { ConsecutiveBreaker, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
import { emptyState, type ClusterState } from '../cluster/state';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import { EtcdCoordinator } from './etcd-coordinator';
import { EtcdStateStore } from './etcd-store';
import { FileStateStore } from './file-store';
import { adoptLegacySynchronousRecord } from './legacy-synchronous';
import type { StateStore } from './store';

export interface StateBackend {
  store: StateStore;
  /** Present with the etcd store. */
  coordinator?: EtcdCoordinator;
  /** This instance's name among the others. */
  instance?: string;
}

/** A single request to etcd (not a watch or keepalive stream) gives up after this. */
const ETCD_REQUEST_TIMEOUT_MS = 2_000;

/**
 * The state to start from. With etcd unreachable at start there is no state to read: start from
 * none, routing no writes, and take etcd's once connected. `dir` is state.dir, where an older
 * version may have left a record of its own (see legacy-synchronous.ts).
 */
export async function loadInitialState(backend: StateBackend, dir: string, log: Logger): Promise<ClusterState> {
  let state: ClusterState;
  try {
    state = await backend.store.load();
  } catch (err) {
    if (backend.coordinator === undefined) throw err;
    log.error({ err: (err as Error).message }, 'cannot read the cluster state from etcd; routing no writes until it can');
    return emptyState();
  }
  return adoptLegacySynchronousRecord(state, backend.store, dir, backend.coordinator === undefined, log);
}

export function createStateBackend(config: Config, log: Logger): StateBackend {
  const etcd = config.state.etcd;
  if (config.state.store === 'file' || etcd === null) return { store: new FileStateStore(config.state.dir) };
  const instance = etcd.instance ?? hostname();
  const client = new Etcd3(etcdOptions(etcd));
  const coordinator = new EtcdCoordinator(client, { prefix: etcd.prefix, instance, leaseTtlSeconds: etcd.leaseTtlSeconds }, log);
  return { store: new EtcdStateStore(client, etcd.prefix, () => coordinator.writerLease()), coordinator, instance };
}

function etcdOptions(etcd: NonNullable<Config['state']['etcd']>): IOptions {
  const options: IOptions = {
    hosts: etcd.endpoints,
    // Without gRPC keepalives a hung member (stopped, or cut off without a reset) is never noticed by a watch.
    grpcOptions: { 'grpc.keepalive_time_ms': 1000, 'grpc.keepalive_timeout_ms': 1000, 'grpc.keepalive_permit_without_calls': 1 },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + ETCD_REQUEST_TIMEOUT_MS }),
    // etcd3's default keeps a failed member's circuit open for 5 s: too long beside a lease of a few seconds.
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 3 }),
    },
  };
  if (etcd.username !== null) options.auth = { username: etcd.username, password: etcd.password };
  if (etcd.tls !== null) {
    options.credentials = {
      rootCertificate: etcd.tls.ca === null ? Buffer.from(rootCertificates.join('\n')) : readFileSync(etcd.tls.ca),
      ...(etcd.tls.cert !== null && etcd.tls.key !== null ? { certChain: readFileSync(etcd.tls.cert), privateKey: readFileSync(etcd.tls.key) } : {}),
    };
  }
  return options;
}
