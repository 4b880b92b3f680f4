// Before the record of a lifted synchronous_standby_names moved into the cluster state, each
// instance kept it in a file of its own in state.dir. An upgrade must not forget to put it back.

import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { ClusterState, LiftedSynchronous } from '../cluster/state';
import type { Logger } from '../log';
import type { StateStore } from './store';

export const LEGACY_SYNCHRONOUS_FILE = 'lifted-synchronous-standby-names.json';

const legacyRecord = z.object({ node: z.string(), names: z.string(), sourceFile: z.string().nullable(), since: z.string() });

/**
 * Moves a legacy record into the cluster state when it still describes the primary and the state
 * has none, then renames the file to `*.migrated` so it is read once. With etcd the state is only
 * written by the elected decider, so the record is reported for the operator instead.
 */
export async function adoptLegacySynchronousRecord(
  state: ClusterState,
  store: StateStore,
  dir: string,
  canWrite: boolean,
  log: Logger,
): Promise<ClusterState> {
  const file = join(dir, LEGACY_SYNCHRONOUS_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.error({ file, err: (err as Error).message }, 'cannot read the legacy lifted synchronous_standby_names record');
    return state;
  }
  let record: LiftedSynchronous;
  try {
    record = legacyRecord.parse(JSON.parse(text));
  } catch (err) {
    log.error({ file, err: (err as Error).message }, 'the legacy lifted synchronous_standby_names record is not valid; leaving it in place');
    return state;
  }
  const retire = async (why: string): Promise<void> => {
    try {
      await rename(file, `${file}.migrated`);
      log.info({ file, node: record.node, names: record.names }, `legacy lifted synchronous_standby_names record retired: ${why}`);
    } catch (err) {
      // Harmless: the next start finds the record adopted or stale, and retires it then.
      log.warn({ file, err: (err as Error).message }, `cannot rename the legacy lifted synchronous_standby_names record (${why})`);
    }
  };
  if (state.synchronousLifted !== undefined || state.primary !== record.node) {
    await retire(state.synchronousLifted !== undefined ? 'the cluster state has its own record' : `${record.node} is no longer the primary`);
    return state;
  }
  if (!canWrite) {
    log.warn(
      { file, node: record.node, names: record.names },
      `an older pgfloat lifted synchronous_standby_names on ${record.node} and kept the record in this file, which the etcd store does not read: ` +
        `once a standby streams from ${record.node}, put the setting back with ALTER SYSTEM SET synchronous_standby_names, then remove the file`,
    );
    return state;
  }
  const { revision, ...rest } = state;
  let written: ClusterState | undefined;
  try {
    written = await store.compareAndSet(revision, { ...rest, synchronousLifted: record });
  } catch (err) {
    log.error({ file, err: (err as Error).message }, 'cannot move the legacy lifted synchronous_standby_names record into the cluster state; the next start tries again');
    return state;
  }
  if (written === undefined) return state; // someone wrote first: the next start tries again
  await retire('moved into the cluster state');
  return written;
}
