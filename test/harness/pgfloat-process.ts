// pgfloat as a separate `pgfloat start` process, so a test can SIGKILL it mid-operation and start another over the same state.

import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { CLI_MAIN } from './cli';
import type { Teardown } from './cluster';
import { parseLogLines, type LogLine } from './log-capture';
import { testWorkers, type NodeAddress } from './pgfloat';
import { freePort } from '../../src/sandbox/ports';

export interface PgfloatProcess {
  pid: number;
  readWriteUrl(): string;
  adminUrl: string;
  lines(): LogLine[];
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
}

export interface ProcessPorts {
  readWrite: number;
  readOnly: number;
  admin: number;
}

export async function pickPorts(): Promise<ProcessPorts> {
  return { readWrite: await freePort(), readOnly: await freePort(), admin: await freePort() };
}

/** Starts `pgfloat start` with a config written into `stateDir`, resolving once it serves /status. */
export async function startPgfloatProcess(
  t: Teardown,
  nodes: readonly NodeAddress[],
  stateDir: string,
  ports: ProcessPorts,
  overrides: Record<string, unknown> = {},
): Promise<PgfloatProcess> {
  const config = {
    listen: { readWrite: `127.0.0.1:${ports.readWrite}`, readOnly: `127.0.0.1:${ports.readOnly}` },
    admin: { listen: `127.0.0.1:${ports.admin}` },
    nodes: nodes.map((n) => ({ name: n.name, host: n.host, port: n.port })),
    monitor: { intervalMs: 200, timeoutMs: 1000, failuresBeforeDown: 2 },
    state: { dir: stateDir },
    log: { level: 'info' },
    proxy: { workers: testWorkers() },
    ...overrides,
  };
  const file = join(stateDir, `pgfloat-${Date.now()}.yaml`);
  writeFileSync(file, stringify(config));
  const child: ChildProcess = spawn(process.execPath, [CLI_MAIN, 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => {
    output += d.toString();
    if (process.env.PGFLOAT_TEST_LOG) process.stderr.write(d);
  });
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const adminUrl = `http://127.0.0.1:${ports.admin}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`pgfloat exited with ${child.exitCode}: ${output.slice(-2000)}`);
    const up = await fetch(`${adminUrl}/health`).then((r) => r.ok, () => false);
    if (up) break;
    if (Date.now() > deadline) throw new Error(`pgfloat did not come up within 30 s: ${output.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid!,
    readWriteUrl: () => `postgres://postgres@127.0.0.1:${ports.readWrite}/postgres`,
    adminUrl,
    lines: () => parseLogLines(output),
    exited,
    kill: async (signal) => {
      child.kill(signal);
      await exited;
    },
  };
}

/** GET /status of a pgfloat process, or undefined while it does not answer. */
export async function processStatus(p: PgfloatProcess): Promise<{ primary: string | null; epoch: number; phase: string; nodes: Array<{ name: string; fenced: boolean }> } | undefined> {
  return fetch(`${p.adminUrl}/status`).then(
    (r) => r.json() as Promise<{ primary: string | null; epoch: number; phase: string; nodes: Array<{ name: string; fenced: boolean }> }>,
    () => undefined,
  );
}
