// Property tests of the failover core: whatever the heartbeats say, at most one node is writable, only at the latest epoch.
import t from 'tap';
import fc from 'fast-check';
import type { FailoverAction, FailoverEvent, NodeReport } from '../../src/failover/types';
import type { ClusterState } from '../../src/cluster/state';
import { Sim, type StepEntry } from './sim';
import type { HealthStatus } from '../../src/cluster/node';

const names = ['n1', 'n2', 'n3'];
const node = fc.constantFrom(...names);
const lsn = fc.integer({ min: 0, max: 8 }).map((n) => `0/${(0x3000000 + n * 0x40000).toString(16).toUpperCase()}`);

const report = fc.record({
  node,
  status: fc.constantFrom<HealthStatus>('up', 'up', 'up', 'suspect', 'down', 'unknown'),
  inRecovery: fc.constantFrom(true, true, false),
  systemIdentifier: fc.constantFrom('sys', 'sys', 'sys', 'other'),
  timeline: fc.integer({ min: 1, max: 4 }),
  currentLsn: lsn,
  receiveLsn: lsn,
  seesPrimary: fc.constantFrom(false, false, true),
}) as fc.Arbitrary<NodeReport>;

type Command =
  | { kind: 'event'; event: Omit<FailoverEvent, 'at'> }
  | { kind: 'tick'; ms: number }
  | { kind: 'answer'; succeed: boolean };

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 8, arbitrary: report.map((r) => ({ kind: 'event' as const, event: { type: 'report' as const, report: r } })) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 7000 }).map((ms) => ({ kind: 'tick' as const, ms })) },
  { weight: 4, arbitrary: fc.boolean().map((ok) => ({ kind: 'answer' as const, succeed: ok || Math.random() < 0.8 })) },
  { weight: 2, arbitrary: node.map((n) => ({ kind: 'event' as const, event: { type: 'promoted' as const, node: n } })) },
  { weight: 1, arbitrary: node.map((n) => ({ kind: 'event' as const, event: { type: 'promotion-failed' as const, node: n, error: 'x' } })) },
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        node.map((n) => ({ command: 'adopt' as const, node: n })),
        node.map((n) => ({ command: 'fence' as const, node: n })),
        node.map((n) => ({ command: 'unfence' as const, node: n })),
        fc.record({ to: fc.option(node, { nil: undefined }), allowDataLoss: fc.boolean() }).map((o) => ({ command: 'failover' as const, ...o })),
      )
      .map((op) => ({ kind: 'event' as const, event: { type: 'operator' as const, op } })),
  },
);

/** Mostly a cluster already running (adopted, maybe after failovers); sometimes a first start. */
const start: fc.Arbitrary<ClusterState> = fc.oneof(
  fc.constant<ClusterState>({ revision: 0, epoch: 0, fenced: [], history: [] }),
  fc.record({ primary: node, epoch: fc.integer({ min: 1, max: 5 }), fenced: fc.subarray(names) }).map(
    ({ primary, epoch, fenced }): ClusterState => ({
      revision: epoch,
      epoch,
      primary,
      systemIdentifier: 'sys',
      timeline: epoch,
      fenced: fenced.filter((n) => n !== primary),
      history: [],
    }),
  ),
  fc.constant<ClusterState>({ revision: 1, epoch: 1, primary: 'n1', systemIdentifier: 'sys', timeline: 1, fenced: [], history: [] }),
);

t.test('at most one writable node, only the persisted primary, never before the old one is fenced', async (t) => {
  let steps = 0;
  let promotions = 0;
  let newPrimaries = 0;
  const phaseCounts: Record<string, number> = {};
  fc.assert(
    fc.property(start, fc.array(command, { minLength: 30, maxLength: 120 }), (initial, commands) => {
      const sim = new Sim(names, initial);
      let pending: Extract<FailoverAction, { type: 'persist' }> | undefined;
      const history: ClusterState[] = [sim.store];
      for (const c of commands) {
        let actions: StepEntry[];
        if (c.kind === 'tick') actions = sim.tick(c.ms);
        else if (c.kind === 'answer') {
          if (pending === undefined) continue;
          const p = pending;
          pending = undefined;
          if (c.succeed && p.expectedRevision === sim.store.revision) {
            const previous = sim.store;
            sim.store = { ...p.cluster, revision: previous.revision + 1 };
            history.push(sim.store);
            if (sim.store.epoch < previous.epoch || sim.store.epoch > previous.epoch + 1) throw new Error(`epoch jumped ${previous.epoch} -> ${sim.store.epoch}`);
            if (previous.primary !== undefined && sim.store.primary !== previous.primary && !sim.store.fenced.includes(previous.primary)) {
              throw new Error(`primary moved ${previous.primary} -> ${sim.store.primary} without fencing the old one`);
            }
            if (sim.store.primary !== previous.primary && sim.store.epoch !== previous.epoch + 1) throw new Error('a new primary without a new epoch');
            if (previous.primary !== undefined && sim.store.primary !== previous.primary) newPrimaries++;
            actions = sim.send({ type: 'persisted', cluster: sim.store });
          } else {
            actions = sim.send({ type: 'persist-failed', error: 'simulated' });
          }
        } else {
          actions = sim.send(c.event as FailoverEvent);
        }
        steps++;
        phaseCounts[sim.state.phase.kind] = (phaseCounts[sim.state.phase.kind] ?? 0) + 1;
        for (const a of actions) {
          if (a.type === 'persist') {
            if (pending !== undefined) throw new Error('a second persist while one is in flight');
            pending = a;
          }
          if (a.type === 'promote') {
            promotions++;
            const old = sim.store.primary;
            if (old === undefined || !sim.store.fenced.includes(old) || a.node === old) {
              throw new Error(`promote ${a.node} while the recorded primary ${old} is not fenced`);
            }
          }
        }
        const writable = sim.writable();
        if (writable !== undefined) {
          if (writable !== sim.store.primary) throw new Error(`writable ${writable} is not the persisted primary ${sim.store.primary}`);
          if (sim.store.fenced.includes(writable)) throw new Error(`writable ${writable} is fenced`);
          if (sim.state.cluster.revision !== sim.store.revision) throw new Error('writable on a state older than the store');
        }
      }
    }),
    { numRuns: 5000, seed: 20261122 },
  );
  t.ok(steps > 10_000, `checked ${steps} steps`);
  t.comment(JSON.stringify(phaseCounts));
  // The generator must reach the interesting paths, or the properties above say little.
  t.ok(promotions > 200, `${promotions} promotions attempted`);
  t.ok(newPrimaries > 30, `${newPrimaries} changes of primary persisted`);
});
