// Runs pgbench against one target and reads its throughput.

import { runCommand } from './processes';

export interface Workload {
  /** The pgbench options that matter, as the report shows them. */
  name: string;
  /** pgbench options besides the connection and duration. */
  args: string[];
}

export const WORKLOADS: Workload[] = [
  { name: '-S -c 1', args: ['-S', '-n', '-c', '1', '-j', '1'] },
  { name: '-S -c 16 -j 2', args: ['-S', '-n', '-c', '16', '-j', '2'] },
  { name: '-S -C -c 4 -j 2', args: ['-S', '-n', '-C', '-c', '4', '-j', '2'] },
];

function connectionArgs(port: number): string[] {
  return ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'postgres'];
}

async function pgbench(args: string[]): Promise<string> {
  const run = await runCommand('pgbench', args, { PGCONNECT_TIMEOUT: '10' });
  if (run.code !== 0) throw new Error(`pgbench ${args.join(' ')} failed (exit ${run.code}):\n${(run.stderr || run.stdout).trim().slice(-2000)}`);
  return run.stdout;
}

/** `pgbench -i -s <scale>`: once, directly on the primary. */
export async function initialize(port: number, scale: number): Promise<void> {
  await pgbench(['-i', '-q', '-s', String(scale), ...connectionArgs(port)]);
}

export interface PgbenchResult {
  tps: number;
  transactions: number;
}

export async function runWorkload(workload: Workload, port: number, durationS: number): Promise<PgbenchResult> {
  const out = await pgbench([...workload.args, '-T', String(durationS), ...connectionArgs(port)]);
  const tps = /^tps = ([\d.]+)/m.exec(out);
  const transactions = /^number of transactions actually processed: (\d+)/m.exec(out);
  const failed = /^number of failed transactions: (\d+)/m.exec(out);
  if (!tps || !transactions) throw new Error(`cannot read pgbench output:\n${out}`);
  if (failed && Number(failed[1]) > 0) throw new Error(`pgbench reported ${failed[1]} failed transactions:\n${out}`);
  return { tps: Number(tps[1]), transactions: Number(transactions[1]) };
}
