// How many client sessions the process's open-files limit leaves room for (Linux /proc; elsewhere unknown).

import { readFileSync } from 'node:fs';

/**
 * Descriptors kept for what is not a relayed session: the listeners, the monitor's connections,
 * the short-lived connections that promote and fence, the state file, the admin API. Without
 * them a full proxy could not carry out a failover.
 */
export const RESERVED_DESCRIPTORS = 100;

/** The soft "Max open files" of this process, or undefined when it cannot be read or is unlimited. */
export function openFilesLimit(limitsFile = '/proc/self/limits'): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  const value = Number(soft);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/** Each relayed session holds two descriptors: its client socket and its server socket. */
export function sessionsWithinLimit(limit: number): number {
  return Math.max(1, Math.floor((limit - RESERVED_DESCRIPTORS) / 2));
}
