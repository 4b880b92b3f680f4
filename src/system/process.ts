// The one way pgfloat runs a child process (PostgreSQL tools, operators' hooks, fencing commands): a deadline, its own process group, the output's tail for errors.

import { spawn } from 'node:child_process';
import type { RunAs } from './os-user';

export interface ProcessOptions {
  /** Run as this user (we are root); undefined runs as ourselves. */
  user?: RunAs | undefined;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  cwd?: string;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** stdout and stderr interleaved as they arrived; the last OUTPUT_LIMIT characters only. */
  output: string;
}

const OUTPUT_LIMIT = 64 * 1024;

/**
 * How long we wait for the pipes to close once the process has exited. A hook that starts a
 * daemon without redirecting its output (`pg_ctl start` without `-l`) leaves the daemon holding
 * them: waiting for that would wait for the server to stop.
 */
const PIPE_GRACE_MS = 500;

/** Resolves with how the process ended; rejects only when it could not be started at all. */
export function runProcess(command: string, args: readonly string[], options: ProcessOptions): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? '/',
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a timeout kills what a shell hook started too, not just the shell.
      detached: true,
      ...(options.user ? { uid: options.user.uid, gid: options.user.gid } : {}),
    });
    let output = '';
    const collect = (d: Buffer): void => {
      output += d.toString();
      if (output.length > 2 * OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    let settled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, options.timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({ code, signal, timedOut, output: output.slice(-OUTPUT_LIMIT) });
    };
    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`could not run ${command}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      const grace = setTimeout(() => finish(code, signal), PIPE_GRACE_MS);
      child.on('close', () => {
        clearTimeout(grace);
        finish(code, signal);
      });
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** "exit code 3", "killed by SIGTERM", "timed out after 500 ms". */
export function describeExit(result: ProcessResult, timeoutMs: number): string {
  if (result.timedOut) return `timed out after ${timeoutMs} ms`;
  if (result.signal) return `killed by ${result.signal}`;
  return `exit code ${result.code}`;
}

export function outputTail(output: string, lines = 15): string {
  return output.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Runs a tool that must succeed: resolves with its output, rejects with how it ended and the output's tail. */
export async function runChecked(command: string, args: readonly string[], options: ProcessOptions): Promise<string> {
  const result = await runProcess(command, args, options);
  if (result.code === 0 && !result.timedOut) return result.output;
  throw new Error(`${command} ${args.join(' ')} failed (${describeExit(result, options.timeoutMs)}):\n${outputTail(result.output, 20)}`);
}
