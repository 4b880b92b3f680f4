// PostgreSQL refuses to run as root: picks (or creates) an unprivileged OS user to run it as.

import { execFileSync } from 'node:child_process';

export interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

let cached: RunAs | undefined | null = null;

function lookup(name: string): RunAs | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid, gid, name };
  } catch {
    return undefined;
  }
}

/** Undefined when we are not root: then PostgreSQL runs as ourselves. */
export function unprivilegedUser(): RunAs | undefined {
  if (cached !== null) return cached;
  if (process.getuid?.() !== 0) return (cached = undefined);
  let user = lookup('postgres') ?? lookup('pgfloat');
  if (user === undefined) {
    let failure = '';
    try {
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'pgfloat'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (err) {
      // Another process may have created it at the same moment; the lookup below decides.
      failure = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim();
    }
    user = lookup('pgfloat');
    if (user === undefined) {
      throw new Error(`running as root, PostgreSQL refuses root, and creating the user "pgfloat" failed: useradd: ${failure}`);
    }
  }
  return (cached = user);
}
