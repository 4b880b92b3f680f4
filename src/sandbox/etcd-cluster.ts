// Starts a real etcd cluster on loopback for a test or a bench run, with raft timings that replace a lost leader in under a second.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Etcd3, type IOptions, type IStatusResponse } from 'etcd3';
import { freePort } from './ports';

/** Where the cluster registers its own stop: a tap test (`t.teardown`) or a bench run's cleanup scope. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly logFile: string;
  /** The running process's pid; undefined while stopped. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
  /** Sends a signal (SIGKILL by default) without waiting; SIGSTOP/SIGCONT work for "hung member" tests. */
  kill(signal?: NodeJS.Signals): void;
  /** Restarts on the same data dir and ports, and resolves once the member follows a leader again. */
  start(): Promise<void>;
}

export interface EtcdCluster {
  readonly dir: string;
  /** Client URLs, e.g. http://127.0.0.1:23456, in member order. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** The leader all running members agree on, waiting up to 2 s for them to agree. */
  leader(): Promise<EtcdMember>;
  /** SIGKILLs the current leader, waits for it to exit, and returns it. */
  killLeader(): Promise<EtcdMember>;
  waitForLeader(timeoutMs?: number): Promise<EtcdMember>;
  /** A client to every endpoint; closed at teardown. */
  client(opts?: Partial<IOptions>): Etcd3;
  /** SIGKILLs every member and removes the temp dir; teardown calls it too. */
  stop(): Promise<void>;
}

const HEALTHY_TIMEOUT_MS = 30_000;
// PR_SET_PDEATHSIG: if the process that started them is killed (say by tap's timeout) its members die
// with it instead of holding ports and CPU for later tests or runs.
const SETPRIV = '/usr/bin/setpriv';

function logTail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// One status call on one member, on a fresh client so no circuit-breaker state carries over. The deadline
// is short because a starting etcd accepts connections before it serves them, so early probes hang.
async function probe(url: string): Promise<IStatusResponse | undefined> {
  const client = new Etcd3({ hosts: url });
  try {
    return await client.maintenance.status({ deadline: Date.now() + 300 });
  } catch {
    return undefined;
  } finally {
    client.close();
  }
}

/** Whether the member answers HTTP on its peer port (which it binds well before it serves it). */
function peerServing(peerUrl: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(`${peerUrl}/version`, { timeout: 300 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

class Member implements EtcdMember {
  private proc: ChildProcess | undefined;
  private exit: Promise<void> = Promise.resolve();
  /** Raft member id as etcd3 reports it (a decimal string); learned from the first status answer. */
  memberId: string | undefined;

  constructor(readonly name: string, readonly clientUrl: string, readonly peerUrl: string,
    private readonly dataDir: string, readonly logFile: string, private readonly cluster: Cluster) {}

  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  launch(state: 'new' | 'existing'): void {
    const args = [
      '--name', this.name, '--data-dir', this.dataDir,
      '--listen-client-urls', this.clientUrl, '--advertise-client-urls', this.clientUrl,
      '--listen-peer-urls', this.peerUrl, '--initial-advertise-peer-urls', this.peerUrl,
      '--initial-cluster', this.cluster.initialCluster, '--initial-cluster-state', state,
      '--initial-cluster-token', this.cluster.token,
      // A 500 ms election timeout replaces a lost leader in about 0.5-1 s (defaults: 100 / 1000 ms).
      '--heartbeat-interval', '50', '--election-timeout', '500',
      '--logger', 'zap', '--log-outputs', 'stderr',
    ];
    // etcd reads ETCD_* variables as flags; one left over in the environment would change the cluster.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
    const fd = openSync(this.logFile, 'a');
    try {
      const [cmd, argv] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', 'etcd', ...args]] : ['etcd', args];
      const proc = spawn(cmd, argv, { stdio: ['ignore', fd, fd], env });
      this.proc = proc;
      this.exit = new Promise((resolve) => {
        proc.once('exit', () => resolve());
        // A failed spawn (no etcd binary) emits only 'error', with exitCode already set.
        proc.on('error', () => proc.exitCode !== null && resolve());
      });
    } finally {
      closeSync(fd);
    }
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.proc?.kill(signal);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 5000);
    await this.exit;
    clearTimeout(timer);
  }

  exited(): Promise<void> {
    return this.exit;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.launch('existing');
    await this.cluster.waitHealthy([this], HEALTHY_TIMEOUT_MS);
  }
}

class Cluster implements EtcdCluster {
  readonly members: Member[] = [];
  readonly token = `pgfloat-${process.pid}-${randomBytes(6).toString('hex')}`;
  private readonly clients: Etcd3[] = [];
  private stopped = false;

  constructor(readonly dir: string) {}

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  get initialCluster(): string {
    return this.members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  }

  /**
   * The leader that the answering members agree on. With `all`, every member in `all` must answer;
   * otherwise a majority of the cluster must (a SIGSTOPped member just times out and is left out).
   */
  private async agreedLeader(all?: Member[]): Promise<Member | undefined> {
    const asked = (all ?? this.members).filter((m) => m.running);
    const answers = await Promise.all(asked.map((m) => probe(m.clientUrl)));
    if (all && answers.includes(undefined)) return undefined;
    let leaderId: string | undefined;
    let count = 0;
    for (const [i, status] of answers.entries()) {
      if (!status) continue;
      asked[i]!.memberId = status.header.member_id;
      if (status.leader === '0' || (leaderId !== undefined && leaderId !== status.leader)) return undefined;
      leaderId = status.leader;
      count++;
    }
    if (!all && count <= this.members.length / 2) return undefined;
    // The leader must itself be up: followers keep naming a killed leader until the election timeout.
    const leader = this.members.find((m) => m.memberId === leaderId);
    return leader?.running ? leader : undefined;
  }

  /** Waits until every member of `all` follows a running leader (or, without `all`, a majority does). */
  async waitHealthy(all: Member[] | undefined, timeoutMs: number): Promise<Member> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const dead = all?.find((m) => !m.running);
      if (dead) throw new Error(`etcd member ${dead.name} exited during start:\n${logTail(dead.logFile)}`);
      const leader = await this.agreedLeader(all);
      if (leader) return leader;
      // A restarted member may name a leader whose memberId is not known yet; asking everyone learns it.
      if (all && all.length < this.members.length) await this.agreedLeader();
      if (Date.now() > deadline) {
        const tails = this.members.map((m) => `--- ${m.name} (${m.logFile})\n${logTail(m.logFile)}`);
        throw new Error(`etcd cluster had no agreed leader after ${timeoutMs} ms:\n${tails.join('\n')}`);
      }
      await delay(50);
    }
  }

  waitForLeader(timeoutMs = 10_000): Promise<Member> {
    return this.waitHealthy(undefined, timeoutMs);
  }

  leader(): Promise<Member> {
    return this.waitForLeader(2000);
  }

  async killLeader(): Promise<Member> {
    const leader = await this.leader();
    leader.kill('SIGKILL');
    await leader.exited();
    return leader;
  }

  client(opts: Partial<IOptions> = {}): Etcd3 {
    const client = new Etcd3({ hosts: this.endpoints, ...opts });
    this.clients.push(client);
    return client;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.clients.splice(0)) c.close();
    for (const m of this.members) m.kill('SIGKILL');
    await Promise.all(this.members.map((m) => m.exited()));
    // PGFLOAT_KEEP_ETCD=1 keeps the data dirs and logs for a post-mortem.
    if (!process.env.PGFLOAT_KEEP_ETCD) rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startEtcd(t: Teardown, opts: { members?: 1 | 3; name?: string } = {}): Promise<EtcdCluster> {
  const size = opts.members ?? 1;
  const prefix = opts.name ?? 'etcd';
  // Another process may take a port between freePort() and etcd's bind, so a bind failure gets new ports.
  for (let attempt = 1; ; attempt++) {
    const cluster = new Cluster(mkdtempSync(join(tmpdir(), 'pgfloat-etcd-')));
    for (let i = 0; i < size; i++) {
      const name = `${prefix}-${i}`;
      const [client, peer] = [await freePort(), await freePort()];
      cluster.members.push(new Member(name, `http://127.0.0.1:${client}`, `http://127.0.0.1:${peer}`,
        join(cluster.dir, `${name}.data`), join(cluster.dir, `${name}.log`), cluster));
    }
    try {
      // A new member asks every peer whether it was bootstrapped already, waiting 1 s on each peer that
      // has bound its port but does not serve yet; started all at once that cost 2 s about one time in
      // five. One at a time, each peer is either refused (instant) or serving.
      const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
      for (const m of cluster.members) {
        m.launch('new');
        while (!(await peerServing(m.peerUrl))) {
          if (!m.running || Date.now() > deadline) {
            const what = m.running ? 'did not serve its peer port in time' : 'exited during start';
            throw new Error(`etcd member ${m.name} ${what}:\n${logTail(m.logFile)}`);
          }
          await delay(20);
        }
      }
      await cluster.waitHealthy(cluster.members, Math.max(0, deadline - Date.now()));
      t.teardown(() => cluster.stop());
      return cluster;
    } catch (err) {
      await cluster.stop();
      if (attempt >= 3 || !/address already in use/i.test((err as Error).message)) throw err;
    }
  }
}
