// What a leak would show first, read from outside the process (Linux /proc) and from pgfloat's /metrics: RSS, open fds, heap.

import { readdirSync, readFileSync } from 'node:fs';
import { get } from 'node:http';

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

/**
 * GET over a connection of its own, closed after the answer (fetch would keep it alive for a few
 * seconds): a kept-alive admin connection would show up as one more open fd in pgfloat.
 */
export function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

export async function getJson<T>(url: string): Promise<T> {
  return JSON.parse(await getText(url)) as T;
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

/** Parent pid of a process, or undefined if it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * A PostgreSQL server's memory: the postmaster and its children, summed as PSS (shared pages,
 * shared_buffers among them, split between the processes that map them), so the sum is not
 * inflated by every backend counting the same shared memory.
 */
export function serverMemory(postmasterPid: number): { processes: number; pssBytes: number } {
  let processes = 0;
  let pss = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== postmasterPid && parentOf(pid) !== postmasterPid) continue;
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      pss += statusField(rollup, 'Pss');
      processes++;
    } catch {
      // exited while we looked
    }
  }
  return { processes, pssBytes: pss };
}

/** CPU seconds a PostgreSQL server has used: the postmaster and its children (user + system, USER_HZ 100). */
export function serverCpuSeconds(postmasterPid: number | undefined): number {
  if (postmasterPid === undefined) return 0;
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(entry) === postmasterPid || Number(fields[1]) === postmasterPid) total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // exited while we looked
    }
  }
  return total;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Median of `count` samples `everyMs` apart: one sample can land just before or after a GC. */
export async function settledSample(pid: number, count: number, everyMs: number): Promise<ProcessSample & { samples: ProcessSample[] }> {
  const samples: ProcessSample[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(everyMs);
    samples.push(sampleProcess(pid));
  }
  const mid = <K extends keyof ProcessSample>(key: K): number => [...samples].map((s) => s[key]).sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
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
