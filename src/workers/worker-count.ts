// How many relay event loops proxy.workers asks for on this host.

import { availableParallelism } from 'node:os';

/** The most loops `auto` starts: each one relays a core's worth of traffic and costs ~40 MiB. */
export const AUTO_MAX_WORKERS = 8;

/**
 * `auto`: one loop per two cores, so PostgreSQL, the clients and the kernel's share of the
 * traffic keep the other half when they run on the same host; at least 1, at most
 * AUTO_MAX_WORKERS. On two cores that is 1, which also spares every new connection the hand-over
 * to a worker process.
 */
export function relayLoops(setting: 'auto' | number, cores = availableParallelism()): number {
  if (setting !== 'auto') return setting;
  return Math.max(1, Math.min(AUTO_MAX_WORKERS, Math.floor(cores / 2)));
}
