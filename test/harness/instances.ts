// Several `pgfloat start` processes sharing one etcd, each reaching etcd (and optionally the nodes) through its own fault relays.

import type { Teardown } from './cluster';
import type { EtcdCluster } from '../../src/sandbox/etcd-cluster';
import { FaultRelay } from './fault-relay';
import type { InstanceLog } from './history-check';
import { eventually, stateDirFor, type NodeAddress } from './pgfloat';
import { pickPorts, startPgfloatProcess, type PgfloatProcess, type ProcessPorts } from './pgfloat-process';
import { TEST_TOKEN } from './cli';

export interface InstanceStatusView {
  primary: string | null;
  epoch: number;
  phase: string;
  readWrite: string;
  failoverBlocked: string | null;
  nodes: Array<{ name: string; fenced: boolean }>;
  coordination: { instance: string; decider: string | null; connected: boolean; reason: string | null } | null;
  instances: Array<{ name: string; decider: boolean; view: Record<string, string>; appliedRevision: number }> | null;
}

export interface GroupInstance {
  name: string;
  readonly ports: ProcessPorts;
  /** The relays between this instance and each etcd member: cut them to cut it off from etcd. */
  etcdLinks: FaultRelay[];
  process: PgfloatProcess | undefined;
  /** Logs of every process this instance ran, the killed ones with their end. */
  logs: InstanceLog[];
  readWriteUrl(): string;
  status(): Promise<InstanceStatusView | undefined>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  /** Cuts (or heals) every link to etcd at once. */
  etcd(mode: 'pass' | 'refuse' | 'blackhole'): Promise<void>;
}

export interface InstanceGroup {
  instances: GroupInstance[];
  /** Read-write URLs of every instance, in order: a multi-host connection string. */
  urls(): string[];
  /** libpq's multi-host form of the same: host=127.0.0.1,... port=a,b,c target_session_attrs=read-write. */
  libpqConninfo(): string;
  get(name: string): GroupInstance;
  /** The decider as the live instances (but `excluding`) report it, once they agree. */
  decider(timeoutMs?: number, excluding?: GroupInstance): Promise<GroupInstance>;
  /** Waits until every running instance routes writes to `node`. */
  allRouteTo(node: string, timeoutMs?: number): Promise<void>;
  logs(): InstanceLog[];
}

export interface GroupOptions {
  names?: string[];
  leaseTtlSeconds?: number;
  overrides?: Record<string, unknown>;
  /** The nodes as one instance sees them (through a relay, say); the cluster's own by default. */
  nodesFor?: (name: string) => readonly NodeAddress[];
}

export async function startInstanceGroup(t: Teardown, nodes: readonly NodeAddress[], etcd: EtcdCluster, opts: GroupOptions = {}): Promise<InstanceGroup> {
  const names = opts.names ?? ['a', 'b', 'c'];
  const instances: GroupInstance[] = [];
  for (const name of names) {
    const links: FaultRelay[] = [];
    for (const endpoint of etcd.endpoints) links.push(await FaultRelay.start(t, Number(new URL(endpoint).port)));
    let ports = await pickPorts();
    const stateDir = stateDirFor(t);
    const configFor = (ports: ProcessPorts) => ({
      admin: { listen: `127.0.0.1:${ports.admin}`, token: TEST_TOKEN },
      state: {
        dir: stateDir,
        store: 'etcd',
        etcd: { endpoints: links.map((l) => `http://127.0.0.1:${l.port}`), prefix: '/pgfloat/test', instance: name, leaseTtlSeconds: opts.leaseTtlSeconds ?? 2 },
      },
      ...opts.overrides,
    });
    const instance: GroupInstance = {
      name,
      get ports() {
        return ports;
      },
      etcdLinks: links,
      process: undefined,
      logs: [],
      readWriteUrl: () => `postgres://postgres@127.0.0.1:${ports.readWrite}/postgres`,
      status: async () =>
        instance.process === undefined
          ? undefined
          : fetch(`${instance.process.adminUrl}/status`).then(
              (r) => r.json() as Promise<InstanceStatusView>,
              () => undefined,
            ),
      kill: async (signal = 'SIGKILL') => {
        const p = instance.process;
        if (p === undefined) return;
        await p.kill(signal);
        instance.logs.push({ name: `${name}#${instance.logs.length + 1}`, lines: p.lines(), endedAt: Date.now() });
        instance.process = undefined;
      },
      start: async () => {
        instance.process = await startPgfloatProcess(t, opts.nodesFor?.(name) ?? nodes, stateDir, ports, configFor(ports));
      },
      etcd: async (mode) => {
        await Promise.all(links.map((l) => l.set(mode)));
      },
    };
    // Another test process may take a picked port before this instance binds it: pick again, at first start only.
    for (let attempt = 1; ; attempt++) {
      try {
        await instance.start();
        break;
      } catch (err) {
        if (attempt === 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
        ports = await pickPorts();
      }
    }
    instances.push(instance);
  }
  const group: InstanceGroup = {
    instances,
    urls: () => instances.map((i) => i.readWriteUrl()),
    libpqConninfo: () =>
      `host=${instances.map(() => '127.0.0.1').join(',')} port=${instances.map((i) => i.ports.readWrite).join(',')} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=10`,
    get: (name) => instances.find((i) => i.name === name)!,
    decider: async (timeoutMs = 30_000, excluding) => {
      let found: GroupInstance | undefined;
      await eventually(async () => {
        const asked = instances.filter((i) => i.process && i !== excluding);
        const views = (await Promise.all(asked.map((i) => i.status()))).filter((s) => s !== undefined);
        const named = new Set(views.map((v) => v!.coordination?.decider ?? null));
        const name = [...named][0];
        found = named.size === 1 && name !== null && name !== undefined ? asked.find((i) => i.name === name) : undefined;
        return found !== undefined;
      }, 'the live instances to agree on a decider', timeoutMs);
      return found!;
    },
    allRouteTo: async (node, timeoutMs = 60_000) => {
      await eventually(async () => {
        const views = await Promise.all(instances.filter((i) => i.process).map((i) => i.status()));
        return views.every((v) => v?.primary === node);
      }, `every live instance to route writes to ${node}`, timeoutMs);
    },
    logs: () => instances.flatMap((i) => [...i.logs, ...(i.process ? [{ name: i.name, lines: i.process.lines() }] : [])]),
  };
  await group.allRouteTo(nodes[0]!.name);
  return group;
}
