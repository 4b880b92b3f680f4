// What the benches read about a process from outside (Linux /proc) and from pgfloat's /metrics: CPU, RSS, open fds, heap, children.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { getText } from './http-get';
import { sampleMedian } from './stats';

export interface ProcessSample {
  at: number;
  /** VmRSS, bytes. */
  rssBytes: number;
  /** RssAnon: the part of RSS that is the process's own memory (heap, buffers), not mapped files. */
  rssAnonBytes: number;
  openFds: number;
}

export interface MetricsSample {
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  activeHandles: number;
  clientConnections: number;
}

/** Kilobyte fields of /proc/<pid>/status, in bytes. */
function statusField(text: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return match ? Number(match[1]) * 1024 : NaN;
}

export function sampleProcess(pid: number): ProcessSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    at: Date.now(),
    rssBytes: statusField(status, 'VmRSS'),
    rssAnonBytes: statusField(status, 'RssAnon'),
    openFds: readdirSync(`/proc/${pid}/fd`).length,
  };
}

/** The soft and hard "Max open files" of a running process. */
export function openFileLimit(pid: number): { soft: number; hard: number } {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').replace('Max open files', '').trim().split(/\s+/);
  const num = (v: string | undefined): number => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: num(soft), hard: num(hard) };
}

/** Sums the values of one metric family over its label sets, from a Prometheus text exposition. */
function metricSum(text: string, name: string): number {
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    seen = true;
  }
  return seen ? sum : NaN;
}

export async function sampleMetrics(adminUrl: string): Promise<MetricsSample> {
  const text = await getText(`${adminUrl}/metrics`);
  return {
    heapUsedBytes: metricSum(text, 'pgfloat_nodejs_heap_size_used_bytes'),
    heapTotalBytes: metricSum(text, 'pgfloat_nodejs_heap_size_total_bytes'),
    externalBytes: metricSum(text, 'pgfloat_nodejs_external_memory_bytes'),
    activeHandles: metricSum(text, 'pgfloat_nodejs_active_handles_total'),
    clientConnections: metricSum(text, 'pgfloat_client_connections'),
  };
}

/** The fields of /proc/<pid>/stat after the parenthesised command name (state, ppid, ...); undefined once the process is gone. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

let ticksPerSecond: number | undefined;

/** The unit of /proc's CPU times, `getconf CLK_TCK` (100 on Linux unless the kernel was built otherwise); asked once. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User plus system CPU seconds the process has used so far (utime and stime, fields 14 and 15); undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields === undefined ? undefined : (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond();
}

export interface CpuTimes {
  userSeconds: number;
  systemSeconds: number;
  /** How many processes were summed: the roots and their live descendants. */
  processes: number;
  /** Each live process's own user + system seconds (not its reaped children's), by pid, roots first. */
  byProcess: Array<{ pid: number; seconds: number }>;
}

/**
 * User and system CPU seconds used so far by `roots` and every live descendant (found through
 * the ppid of each /proc/<pid>/stat), so a proxy with worker processes is counted whole.
 * /proc/<pid>/stat already sums all the threads of a process (haproxy's nbthread), so tasks
 * are not read one by one; each process's cutime and cstime add the children it has reaped,
 * so a worker that exits between two readings still counts. Undefined once a root is gone.
 */
export function proxyCpu(roots: readonly number[]): CpuTimes | undefined {
  const stats = new Map<number, string[]>();
  const children = new Map<number, number[]>();
  for (const pid of runningPids()) {
    const fields = statFields(pid);
    if (fields === undefined) continue; // exited while we looked
    stats.set(pid, fields);
    const ppid = Number(fields[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  if (roots.some((pid) => !stats.has(pid))) return undefined;
  const seen = new Set<number>();
  const pending = [...roots];
  let ticks = { user: 0, system: 0 };
  const own: Array<{ pid: number; ticks: number }> = [];
  const hz = clockTicksPerSecond();
  for (let pid = pending.shift(); pid !== undefined; pid = pending.shift()) {
    if (seen.has(pid)) continue;
    seen.add(pid);
    // utime, stime, cutime, cstime: fields 14 to 17
    const f = stats.get(pid)!.slice(11, 15).map(Number);
    ticks = { user: ticks.user + f[0]! + f[2]!, system: ticks.system + f[1]! + f[3]! };
    own.push({ pid, ticks: f[0]! + f[1]! });
    pending.push(...(children.get(pid) ?? []));
  }
  return { userSeconds: ticks.user / hz, systemSeconds: ticks.system / hz, processes: seen.size, byProcess: own.map((o) => ({ pid: o.pid, seconds: o.ticks / hz })) };
}

function parentOf(pid: number | string): number | undefined {
  const fields = statFields(pid);
  return fields === undefined ? undefined : Number(fields[1]);
}

const runningPids = (): number[] => readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number);

/** Processes whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  return runningPids().filter((child) => parentOf(child) === pid);
}

/**
 * A PostgreSQL server's memory: the postmaster and its children, summed as PSS (shared pages,
 * shared_buffers among them, split between the processes that map them), so the sum is not
 * inflated by every backend counting the same shared memory.
 */
export function serverMemory(postmasterPid: number): { processes: number; pssBytes: number } {
  let processes = 0;
  let pss = 0;
  for (const pid of [postmasterPid, ...childrenOf(postmasterPid)]) {
    try {
      pss += statusField(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss');
      processes++;
    } catch {
      // exited while we looked
    }
  }
  return { processes, pssBytes: pss };
}

/** CPU seconds a PostgreSQL server has used: the postmaster and its children. */
export function serverCpuSeconds(postmasterPid: number | undefined): number {
  if (postmasterPid === undefined) return 0;
  return [postmasterPid, ...childrenOf(postmasterPid)].reduce((total, pid) => total + (cpuSeconds(pid) ?? 0), 0);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Median of `count` samples `everyMs` apart: one sample can land just before or after a GC. */
export async function settledSample(pid: number, count: number, everyMs: number): Promise<ProcessSample & { samples: ProcessSample[] }> {
  const samples: ProcessSample[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(everyMs);
    samples.push(sampleProcess(pid));
  }
  const mid = <K extends keyof ProcessSample>(key: K): number => sampleMedian(samples.map((s) => s[key]));
  return { at: samples[0]!.at, rssBytes: mid('rssBytes'), rssAnonBytes: mid('rssAnonBytes'), openFds: mid('openFds'), samples };
}

/**
 * Nanoseconds the process's main thread (for Node, the event loop) has run, and has waited
 * runnable for a CPU (/proc/<pid>/schedstat). A high wait share means the machine was
 * oversubscribed, so latency then says more about the machine than about the process.
 */
export function schedStat(pid: number): { runNs: number; waitNs: number } {
  const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ');
  return { runNs: Number(run), waitNs: Number(wait) };
}

export const mib = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;
