// Child processes of the benches: long-running services (stopped at cleanup, killed if we exit first) and one-off commands.

import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import type { RunAs } from '../../src/system/os-user';
import { onCleanup } from './cleanup';

const services = new Set<ChildProcess>();

// Last resort when the process exits without running cleanupAll: no child outlives us.
process.on('exit', () => {
  for (const child of services) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export interface Service {
  name: string;
  child: ChildProcess;
  /** Output so far (stdout and stderr), for error messages. */
  output(): string;
}

/** Starts a long-running process (in the foreground mode of the tool) and registers its shutdown. */
export function startService(name: string, command: string, args: string[], user?: RunAs): Service {
  const child = spawn(command, args, {
    cwd: '/',
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  services.add(child);
  let output = '';
  const keep = (d: Buffer): void => {
    output = (output + d.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.on('error', (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
  onCleanup(() => stopChild(child));
  return { name, child, output: () => output };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child is gone. */
export function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      services.delete(child);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port; fails if `service` dies first. */
export async function waitForPort(port: number, service: Service, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (service.child.exitCode !== null || service.child.signalCode !== null) {
      throw new Error(`${service.name} exited during startup:\n${service.output()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${service.name} did not listen on ${port} within ${timeoutMs} ms:\n${service.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs a command to completion, collecting its output; it is killed with us if we exit first. */
export function runCommand(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    services.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => {
      services.delete(child);
      reject(new Error(`${command}: ${err.message}`));
    });
    child.on('close', (code) => {
      services.delete(child);
      resolvePromise({ code, stdout, stderr });
    });
  });
}
