// Reliability: each link (pgfloat-primary, pgfloat-standby, standby-primary) refused or blackholed under write load, and the primary cut off from both.
import t from 'tap';
import type { LocalCluster } from '../../src/sandbox/local-cluster';
import { FaultRelay, type LinkMode } from '../harness/fault-relay';
import { clientBackendCount, nodeStatus, serverPortOf, tryQuery } from '../harness/faults';
import { connectClient, queryOnce } from '../harness/clients';
import { missingFrom } from '../harness/history-check';
import { eventually } from '../harness/pgfloat';
import { holdsFor } from '../harness/waiting';
import { startScenario, type Scenario, type ScenarioTest } from '../harness/reliability';

/** Longer than detection (2 heartbeats of up to 1 s) plus the witness window (3 s): long enough for any failover to start. */
const OUTAGE_MS = 7000;
const OUTAGE_WHY = 'any failover starts within down detection, 2 heartbeats of up to 1 s, plus the witness window, 3 s';

/** Asserts no failover (no new epoch, no failover phase) at any sample of the outage. */
async function noFailoverDuringOutage(t: { ok(found: unknown, message: string): boolean }, s: Scenario): Promise<void> {
  const calm = await holdsFor(OUTAGE_MS, OUTAGE_WHY, () => {
    const status = s.proxy.instance.status();
    return status.epoch === 1 && !status.phase.startsWith('failover:');
  });
  t.ok(calm.held, `no failover began during the outage: ${calm.summary}`);
}

interface Links {
  pgfloatPrimary: FaultRelay;
  pgfloatStandby: FaultRelay;
  standbyPrimary: FaultRelay;
}

/** pgfloat reaches each node through a relay, and so does the standby's WAL receiver. */
async function withLinks(t: ScenarioTest, name: string): Promise<{ s: Scenario; links: Links }> {
  let links: Links | undefined;
  const s = await startScenario(t, name, {
    nodes: async (cluster) => {
      links = {
        pgfloatPrimary: await FaultRelay.start(t, cluster.primary.port),
        pgfloatStandby: await FaultRelay.start(t, cluster.standby.port),
        standbyPrimary: await FaultRelay.start(t, cluster.primary.port),
      };
      await streamThrough(cluster, links.standbyPrimary);
      return [
        { name: 'n1', host: '127.0.0.1', port: links.pgfloatPrimary.port },
        { name: 'n2', host: '127.0.0.1', port: links.pgfloatStandby.port },
      ];
    },
  });
  return { s, links: links! };
}

/** Points the standby's primary_conninfo at the relay and waits until it streams through it. */
async function streamThrough(cluster: LocalCluster, relay: FaultRelay): Promise<void> {
  const standby = cluster.standby.connectionString();
  const [{ conninfo }] = (await queryOnce<{ conninfo: string }>(standby, 'SELECT current_setting($1) AS conninfo', ['primary_conninfo'])) as [{ conninfo: string }];
  const via = conninfo.replace(/\bport=\d+/, `port=${relay.port}`);
  await queryOnce(standby, `ALTER SYSTEM SET primary_conninfo = '${via.replace(/'/g, "''")}'`);
  await queryOnce(standby, 'SELECT pg_reload_conf()');
  await eventually(async () => (await tryQuery<{ port: number }>(standby, "SELECT sender_port AS port FROM pg_stat_wal_receiver WHERE status = 'streaming'"))?.[0]?.port === relay.port, 'n2 to stream through the relay');
}

async function standbyCatchesUp(t: ScenarioTest, s: Scenario): Promise<void> {
  const standby = s.checked.find((n) => n.name === 'n2')!;
  await eventually(async () => (await missingFrom(standby, s.writers.log.acked))?.length === 0, 'n2 to have every acknowledged write', 60_000);
  t.same(await missingFrom(standby, s.writers.log.acked), [], 'the standby caught up with every acknowledged write');
}

for (const mode of ['refuse', 'blackhole'] as LinkMode[]) {
  t.test(`pgfloat-primary ${mode}d while the standby still streams: the witness rule, no failover`, async (t) => {
    const { s, links } = await withLinks(t, `pgfloat-primary link ${mode}d`);
    await links.pgfloatPrimary.set(mode);
    await eventually(() => nodeStatus(s.proxy.instance.status(), 'n1').health === 'down', 'n1 to be down for pgfloat', 30_000);
    await noFailoverDuringOutage(t, s);
    const status = s.proxy.instance.status();
    t.equal(status.epoch, 1, 'no promotion');
    t.match(status.failoverBlocked ?? '', /requireStandbyConfirmation/, `the documented rule blocks it: ${status.failoverBlocked}`);
    t.same(await tryQuery(s.cluster.standby.connectionString(), 'SELECT pg_is_in_recovery() AS r'), [{ r: true }], 'n2 is still a standby');
    const refusal = await queryOnce(s.proxy.readWriteUrl(), 'select 1').then(() => undefined, (err: Error & { code?: string; detail?: string }) => err);
    t.equal(refusal?.code, '57P03', 'meanwhile writers are refused');
    t.match(refusal?.detail ?? '', /still receives WAL/, 'with the reason');
    await links.pgfloatPrimary.set('pass');
    await eventually(() => s.proxy.instance.status().primary === 'n1', 'n1 to be routed again', 60_000);
    await s.writers.acked(50);
    t.notOk(nodeStatus(s.proxy.instance.status(), 'n1').fenced, 'n1 was never fenced');
    await s.finish({ finalPrimary: 'n1', connectFailuresExpected: true });
  });

  t.test(`pgfloat-standby ${mode}d: writes carry on, read-only clients fall back to the primary`, async (t) => {
    const { s, links } = await withLinks(t, `pgfloat-standby link ${mode}d`);
    await links.pgfloatStandby.set(mode);
    await eventually(() => nodeStatus(s.proxy.instance.status(), 'n2').health === 'down', 'n2 to be down for pgfloat', 30_000);
    await s.writers.acked(100);
    const reader = await connectClient(s.proxy.readOnlyUrl());
    t.equal(await serverPortOf(reader), s.cluster.primary.port, 'a read-only client reaches the primary');
    await reader.end();
    await noFailoverDuringOutage(t, s);
    t.equal(s.proxy.instance.status().epoch, 1, 'no failover');
    await links.pgfloatStandby.set('pass');
    await eventually(() => s.proxy.instance.status().standbys.includes('n2'), 'n2 to serve read-only clients again', 60_000);
    await s.finish({ finalPrimary: 'n1' });
    await standbyCatchesUp(t, s);
  });

  t.test(`standby-primary ${mode}d: writes carry on, no failover, the standby catches up when it heals`, async (t) => {
    const { s, links } = await withLinks(t, `standby-primary link ${mode}d`);
    await links.standbyPrimary.set(mode);
    await s.writers.acked(100);
    await noFailoverDuringOutage(t, s);
    await s.writers.acked(100);
    const status = s.proxy.instance.status();
    t.equal(status.epoch, 1, 'no failover');
    t.equal(status.primary, 'n1');
    await links.standbyPrimary.set('pass');
    await s.finish({ finalPrimary: 'n1' });
    await standbyCatchesUp(t, s);
  });
}

t.test('the primary cut off from pgfloat and the standby (blackhole): failover, and after the heal it never gets a client', async (t) => {
  const { s, links } = await withLinks(t, 'primary partitioned from both');
  const faultAt = Date.now();
  await Promise.all([links.pgfloatPrimary.set('blackhole'), links.standbyPrimary.set('blackhole')]);
  await eventually(() => s.proxy.instance.status().primary === 'n2', 'failover to n2', 90_000);
  await s.writers.acked(50);
  await Promise.all([links.pgfloatPrimary.set('pass'), links.standbyPrimary.set('pass')]);
  await eventually(() => nodeStatus(s.proxy.instance.status(), 'n1').roguePrimary, 'n1 to be seen as a (rogue) primary again', 60_000);
  await s.writers.acked(50);
  await eventually(async () => (await clientBackendCount(s.cluster.primary).catch(() => -1)) === 0, 'n1 to have no client session', 30_000);
  t.equal(s.proxy.instance.status().primary, 'n2');
  await s.finish({ faultAt });
});
