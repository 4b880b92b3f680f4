// Runs the built `pgfloat` command line as a user would, and follows admin API operations.

import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const CLI_MAIN = resolve(__dirname, '../../src/cli/main.js');
export const TEST_TOKEN = 'test-token-0123456789abcdef';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

export interface OperationRecordView {
  id: string;
  kind: string;
  state: 'running' | 'succeeded' | 'failed';
  steps: Array<{ at: string; message: string }>;
  result: string | null;
}

/** POSTs an operation with the test token; the HTTP status and JSON answer. */
export async function postOperation(adminUrl: string, path: string, body: unknown = {}, token: string | undefined = TEST_TOKEN): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${adminUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Polls GET /operations/{id} until the operation has ended. */
export async function operationResult(adminUrl: string, id: string, timeoutMs = 120_000): Promise<OperationRecordView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const op = (await (await fetch(`${adminUrl}/operations/${id}`)).json()) as OperationRecordView;
    if (op.state !== 'running') return op;
    if (Date.now() > deadline) throw new Error(`operation ${id} still running after ${timeoutMs} ms: ${JSON.stringify(op.steps)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
