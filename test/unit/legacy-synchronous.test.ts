// An upgrade from a version that kept the lifted synchronous_standby_names record in a file of its
// own: the record moves into the cluster state once, and only while it still describes the primary.

import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { ClusterState, LiftedSynchronous } from '../../src/cluster/state';
import { silentLogger } from '../../src/log';
import { loadInitialState } from '../../src/state/backend';
import type { EtcdCoordinator } from '../../src/state/etcd-coordinator';
import { FileStateStore } from '../../src/state/file-store';
import { LEGACY_SYNCHRONOUS_FILE } from '../../src/state/legacy-synchronous';

const record: LiftedSynchronous = { node: 'n2', names: 'FIRST 1 (n1)', sourceFile: null, since: '2026-12-01T10:00:00.000Z' };

async function setUp(t: tap.Test, legacy: string | undefined, state: Partial<ClusterState>): Promise<{ dir: string; store: FileStateStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'pgfloat-legacy-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new FileStateStore(dir);
  await store.compareAndSet(0, { epoch: 2, primary: 'n2', fenced: ['n1'], history: [], ...state });
  if (legacy !== undefined) await writeFile(join(dir, LEGACY_SYNCHRONOUS_FILE), legacy);
  return { dir, store };
}

t.test('a record for the current primary moves into the cluster state, and the file is retired', async (t) => {
  const { dir, store } = await setUp(t, JSON.stringify(record), {});
  const state = await loadInitialState({ store }, dir, silentLogger);
  t.same(state.synchronousLifted, record);
  t.equal(state.revision, 2, 'written with a compare-and-set');
  t.same((await store.load()).synchronousLifted, record, 'persisted');
  t.same((await readdir(dir)).filter((f) => f.startsWith('lifted')), [`${LEGACY_SYNCHRONOUS_FILE}.migrated`]);
  t.same(await loadInitialState({ store }, dir, silentLogger), state, 'read once: a second start finds nothing to adopt');
});

t.test('a record for a node that is no longer the primary is retired, not adopted', async (t) => {
  const { dir, store } = await setUp(t, JSON.stringify({ ...record, node: 'n1' }), {});
  const state = await loadInitialState({ store }, dir, silentLogger);
  t.equal(state.synchronousLifted, undefined);
  t.equal(state.revision, 1, 'nothing written');
  t.same((await readdir(dir)).filter((f) => f.startsWith('lifted')), [`${LEGACY_SYNCHRONOUS_FILE}.migrated`]);
});

t.test("the cluster state's own record wins over the file", async (t) => {
  const own: LiftedSynchronous = { ...record, names: 'ANY 1 (n1, n3)' };
  const { dir, store } = await setUp(t, JSON.stringify(record), { synchronousLifted: own });
  t.same((await loadInitialState({ store }, dir, silentLogger)).synchronousLifted, own);
});

t.test('a file that is not a record is left in place and changes nothing', async (t) => {
  const { dir, store } = await setUp(t, '{"node": 3}', {});
  const state = await loadInitialState({ store }, dir, silentLogger);
  t.equal(state.synchronousLifted, undefined);
  t.same((await readdir(dir)).filter((f) => f.startsWith('lifted')), [LEGACY_SYNCHRONOUS_FILE]);
});

t.test('without a legacy file the state is what the store holds', async (t) => {
  const { dir, store } = await setUp(t, undefined, {});
  t.same(await loadInitialState({ store }, dir, silentLogger), await store.load());
});

t.test('with etcd the record is not written (only the elected decider writes the state) and the file stays', async (t) => {
  const { dir, store } = await setUp(t, JSON.stringify(record), {});
  const coordinator = {} as unknown as EtcdCoordinator; // only its presence matters here
  const state = await loadInitialState({ store, coordinator }, dir, silentLogger);
  t.equal(state.synchronousLifted, undefined);
  t.equal((await store.load()).revision, 1, 'nothing written');
  t.same((await readdir(dir)).filter((f) => f.startsWith('lifted')), [LEGACY_SYNCHRONOUS_FILE]);
});
