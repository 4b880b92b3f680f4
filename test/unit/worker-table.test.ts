// The relay workers' bookkeeping: least-loaded choice, counts in flight, what a crash loses, restart backoff; and proxy.workers: auto.

import t from 'tap';
import { emptyCounts, type RelayCounts } from '../../src/proxy/relay-plane';
import { relayLoops } from '../../src/workers/worker-count';
import { WorkerTable } from '../../src/workers/worker-table';

function counts(open: number, byNode: Record<string, number> = {}): RelayCounts {
  return { ...emptyCounts(), open, byNode };
}

t.test('clients go to the ready worker holding the fewest sessions, sockets in flight included', async (t) => {
  const table = new WorkerTable(3);
  table.starting(1, 101, 0);
  table.starting(2, 102, 0);
  table.starting(3, 103, 0);
  t.equal(table.choose(), undefined, 'nobody is ready');
  table.ready(1);
  table.ready(2);
  t.equal(table.choose(), 1);
  table.dispatched(1);
  t.equal(table.choose(), 2, 'a socket on its way to 1 counts there');
  table.dispatched(2);
  table.dispatched(2);
  table.counted(1, counts(1), 1);
  t.equal(table.open(), 3, 'one received by 1, two on their way to 2');
  t.equal(table.choose(), 1);
  table.counted(2, counts(0), 2);
  t.equal(table.open(), 1, 'both of 2 came and went');
  t.equal(table.choose(), 2);
  table.undispatched(2);
  t.equal(table.open(), 1, 'a failed hand-over never goes below what the worker reported');
  t.same(table.liveSlots(), [1, 2, 3]);
  t.same(table.readySlots(), [1, 2]);
});

t.test('a crashed worker loses what it held, restarts at once after a long life, and backs off while it keeps dying young', async (t) => {
  const table = new WorkerTable(2);
  table.starting(1, 101, 0);
  table.ready(1);
  table.dispatched(1);
  table.counted(1, counts(1, { n1: 1 }), 1);
  const first = table.exited(1, 60_000);
  t.same(first.lost.byNode, { n1: 1 }, 'its sessions are reported lost');
  t.equal(first.restartInMs, 0, 'a worker that lived long restarts at once');
  t.equal(table.open(), 0);
  t.equal(table.choose(), undefined);
  table.starting(1, 201, 60_000);
  t.equal(table.exited(1, 60_500).restartInMs, 100, 'dying young: a short wait');
  table.starting(1, 202, 60_600);
  t.equal(table.exited(1, 60_700).restartInMs, 200, 'and doubling');
  for (let i = 0; i < 20; i++) {
    table.starting(1, 300 + i, 70_000);
    table.exited(1, 70_001);
  }
  table.starting(1, 400, 80_000);
  t.equal(table.exited(1, 80_001).restartInMs, 10_000, 'up to a ceiling');
  t.equal(table.status()[0]!.restarts, 24);
  table.starting(2, 500, 0);
  t.equal(table.exited(2, 1, false).restartInMs, undefined, 'stopping: no restart');
});

t.test('proxy.workers: auto is one loop per two cores, at least one, at most eight', async (t) => {
  t.equal(relayLoops('auto', 1), 1);
  t.equal(relayLoops('auto', 2), 1);
  t.equal(relayLoops('auto', 3), 1);
  t.equal(relayLoops('auto', 8), 4);
  t.equal(relayLoops('auto', 64), 8);
  t.equal(relayLoops(3, 64), 3, 'a number is taken as given');
});
