// Runs a PostgreSQL tool as the unprivileged user and turns a failure into an error with its output.

import { spawn } from 'node:child_process';
import type { RunAs } from './os-user';

export interface ToolRun {
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  user: RunAs | undefined;
  /** Added to the environment; the caller's own PG* variables are dropped first. */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** The caller's libpq settings (PGSSLMODE, PGSERVICE, PGPASSWORD...) must not redirect or break our tools. */
function cleanEnv(extra: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // NODE_OPTIONS (a test runner's hooks, say) would follow the server into every archive_command it runs.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, ...extra };
}

export function lastLines(text: string, lines = 20): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export function runTool(command: string, args: readonly string[], options: ToolOptions): Promise<ToolRun> {
  const shown = `${command} ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      // The unprivileged user may not be able to enter our working directory.
      cwd: '/',
      env: cleanEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.user ? { uid: options.user.uid, gid: options.user.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${shown}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve({ stdout, stderr });
      const how = timedOut ? `timed out after ${options.timeoutMs ?? 120_000} ms` : signal ? `killed by ${signal}` : `exit code ${code}`;
      reject(new Error(`${shown} failed (${how}):\n${lastLines(stderr || stdout)}`));
    });
  });
}
