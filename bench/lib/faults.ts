// The faults the failover and soak benches inject into the primary: SIGKILL of its postmaster, or SIGSTOP of its whole process tree.

import type { LocalNode } from '../../src/sandbox/local-cluster';
import { childrenOf } from './process-sample';

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
