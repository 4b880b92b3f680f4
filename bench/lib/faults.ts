// The faults the failover benchmark injects into the primary: SIGKILL of its postmaster, or SIGSTOP of its whole process tree.

import { readdirSync, readFileSync } from 'node:fs';
import type { LocalNode } from '../../src/sandbox/local-cluster';

export type FaultName = 'sigkill' | 'sigstop';

export const FAULTS: Record<FaultName, string> = {
  sigkill: 'SIGKILL of the primary postmaster',
  sigstop: 'SIGSTOP of the primary postmaster and all its children',
};

export interface InjectedFault {
  /** Wall-clock ms just before the first signal was sent. */
  at: number;
  /** The processes signalled. */
  pids: number[];
  /** Undoes what can be undone (SIGCONT of frozen processes); safe to call more than once. */
  undo(): void;
}

/** Processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the parenthesised command name: state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return children;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

export function inject(fault: FaultName, node: LocalNode): InjectedFault {
  const postmaster = node.postmasterPid();
  if (postmaster === undefined) throw new Error(`${node.name} has no postmaster to signal`);
  const at = Date.now();
  if (fault === 'sigkill') {
    process.kill(postmaster, 'SIGKILL');
    return { at, pids: [postmaster], undo: () => undefined };
  }
  // The postmaster first: frozen, it cannot fork a child we would miss.
  process.kill(postmaster, 'SIGSTOP');
  const frozen = [postmaster];
  for (let pass = 0; pass < 2; pass++) {
    for (const child of childrenOf(postmaster)) {
      if (frozen.includes(child)) continue;
      signal(child, 'SIGSTOP');
      frozen.push(child);
    }
  }
  let undone = false;
  return {
    at,
    pids: frozen,
    undo: () => {
      if (undone) return;
      undone = true;
      // Children first, so the postmaster wakes up to live children rather than reaping stopped ones.
      for (const pid of [...frozen].reverse()) signal(pid, 'SIGCONT');
    },
  };
}
