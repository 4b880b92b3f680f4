// Reliability: two switchovers under write load, with the history checker: nothing lost, no failed connection, roles back where they started.
import t from 'tap';
import { operationResult, postOperation, TEST_TOKEN } from '../harness/cli';
import { missingFrom } from '../harness/history-check';
import { eventually } from '../harness/pgfloat';
import { startScenario } from '../harness/reliability';

t.test('switchover under load, twice', async (t) => {
  const s = await startScenario(t, 'switchover under load, twice', { managed: true, overrides: { admin: { listen: '127.0.0.1:0', token: TEST_TOKEN } } });
  for (const [from, to] of [['n1', 'n2'], ['n2', 'n1']] as const) {
    const answer = await postOperation(s.proxy.adminUrl, '/switchover', {});
    t.equal(answer.status, 202, `switchover ${from} -> ${to} accepted`);
    const op = await operationResult(s.proxy.adminUrl, String(answer.json.operation));
    t.equal(op.state, 'succeeded', `switchover ${from} -> ${to}: ${op.result}`);
    t.equal(s.proxy.instance.status().primary, to);
    await eventually(() => s.proxy.instance.status().standbys.includes(from), `${from} to serve as a standby`, 60_000);
    await s.writers.acked(100);
  }
  const report = await s.finish({ finalPrimary: 'n1' });
  t.equal(report.lost.length, 0, 'no acknowledged write lost');
  t.equal(report.unknown, 0, 'no write left without an answer: sessions closed at transaction boundaries');
  t.same(await missingFrom(s.checked.find((n) => n.name === 'n2')!, s.writers.log.acked).then((m) => m?.length), 0, 'the standby has them all too');
});
