// The admin HTTP API against a live cluster: /status JSON, /metrics exposition, and bad requests.

import t from 'tap';
import { request } from 'node:http';
import { startCluster } from '../harness/cluster';
import { eventually, startPgfloat } from '../harness/pgfloat';
import { connectClient, queryOnce } from '../harness/clients';
import type { PgfloatStatus } from '../../src/admin/status';

interface HttpAnswer {
  status: number;
  contentType: string;
  body: string;
}

function http(method: string, url: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample line of the Prometheus text format, e.g. `pgfloat_node_up{node="n1"}`. */
function sample(metrics: string, series: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

t.test('admin API', async (t) => {
  const cluster = await startCluster(t);
  const proxy = await startPgfloat(t, cluster);
  const lsnPattern = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;

  t.test('GET /status', async (t) => {
    // Wait for the standby's replay position and the primary's LSN to be known.
    await eventually(() => proxy.instance.status().nodes.every((n) => n.lsn !== null && n.health === 'up'), 'both nodes seen');
    const answer = await http('GET', `${proxy.adminUrl}/status`);
    t.equal(answer.status, 200);
    t.match(answer.contentType, /^application\/json/);
    const status = JSON.parse(answer.body) as PgfloatStatus;
    t.equal(status.primary, 'n1');
    t.same(status.standbys, ['n2']);
    t.equal(status.readWrite, 'routing');
    t.equal(status.splitBrain, false);
    t.equal(status.nodes.length, 2);
    const [n1, n2] = status.nodes;
    t.match(n1, { name: 'n1', port: cluster.primary.port, role: 'primary', health: 'up', timeline: 1, fenced: false });
    t.match(n2, { name: 'n2', port: cluster.standby.port, role: 'standby', health: 'up', timeline: 1, fenced: false });
    t.match(n1!.lsn, lsnPattern, 'primary LSN');
    t.match(n2!.lsn, lsnPattern, 'standby replay LSN');
    t.equal(n1!.systemIdentifier, n2!.systemIdentifier, 'same system identifier');
    t.match(n1!.systemIdentifier, /^\d+$/);
    t.type(n2!.receiveLagBytes, 'number', 'standby receive lag is known');
    t.type(n2!.replayLagBytes, 'number', 'standby replay lag is known');
    t.equal(n2!.walReceiver, 'streaming');
    t.type(n1!.heartbeatMs, 'number');
  });

  t.test('/status counts clients per listener and node', async (t) => {
    const rw = await connectClient(proxy.readWriteUrl());
    const ro = await connectClient(proxy.readOnlyUrl());
    const ro2 = await connectClient(proxy.readOnlyUrl());
    t.teardown(() => Promise.all([rw.end(), ro.end(), ro2.end()]));
    const status = JSON.parse((await http('GET', `${proxy.adminUrl}/status`)).body) as PgfloatStatus;
    t.same(status.clients, { readWrite: 1, readOnly: 2 });
    t.same(status.nodes.map((n) => [n.name, n.sessions]), [['n1', 1], ['n2', 2]]);
  });

  t.test('GET /metrics', async (t) => {
    const client = await connectClient(proxy.readWriteUrl());
    t.teardown(() => client.end());
    const before = sample((await http('GET', `${proxy.adminUrl}/metrics`)).body, 'pgfloat_relayed_bytes_total{direction="server_to_client"}') ?? 0;
    await client.query(`select repeat('m', 200000)`);
    const answer = await http('GET', `${proxy.adminUrl}/metrics`);
    t.equal(answer.status, 200);
    t.match(answer.contentType, /^text\/plain/);
    const metrics = answer.body;
    t.equal(sample(metrics, 'pgfloat_node_up{node="n1"}'), 1);
    t.equal(sample(metrics, 'pgfloat_node_up{node="n2"}'), 1);
    t.match(metrics, /^# TYPE pgfloat_heartbeat_seconds histogram$/m);
    t.ok((sample(metrics, 'pgfloat_heartbeat_seconds_count{node="n1"}') ?? 0) > 0, 'heartbeats observed for n1');
    t.ok((sample(metrics, 'pgfloat_heartbeat_seconds_count{node="n2"}') ?? 0) > 0, 'heartbeats observed for n2');
    t.equal(sample(metrics, 'pgfloat_client_connections{listener="readWrite"}'), 1, 'one read-write client');
    t.equal(sample(metrics, 'pgfloat_client_connections{listener="readOnly"}'), 0, 'no read-only client');
    const after = sample(metrics, 'pgfloat_relayed_bytes_total{direction="server_to_client"}');
    t.ok(after !== undefined && after - before >= 200_000, 'the 200 kB result was counted', { before, after });
    t.ok((sample(metrics, 'pgfloat_relayed_bytes_total{direction="client_to_server"}') ?? 0) > 0, 'client bytes counted');
    t.equal(sample(metrics, 'pgfloat_verified_primary{node="n1"}'), 1);
    t.equal(sample(metrics, 'pgfloat_node_role{node="n2",role="standby"}'), 1);
  });

  t.test('probe endpoints answer 200 or 503 as Patroni\'s do', async (t) => {
    const primary = await http('GET', `${proxy.adminUrl}/primary`);
    t.equal(primary.status, 200);
    t.same(JSON.parse(primary.body), { primary: 'n1' });
    const replica = await http('GET', `${proxy.adminUrl}/replica`);
    t.equal(replica.status, 200);
    t.same(JSON.parse(replica.body), { standbys: ['n2'] });
  });

  t.test('other paths and methods', async (t) => {
    const missing = await http('GET', `${proxy.adminUrl}/nope`);
    t.equal(missing.status, 404);
    t.match(JSON.parse(missing.body), { error: /no such endpoint: \/nope/ });
    const post = await http('POST', `${proxy.adminUrl}/status`);
    t.equal(post.status, 405);
    t.match(JSON.parse(post.body), { error: /method POST not allowed/ });
    t.equal((await http('DELETE', `${proxy.adminUrl}/metrics`)).status, 405);
    const health = await http('GET', `${proxy.adminUrl}/health`);
    t.equal(health.status, 200);
    t.same(JSON.parse(health.body), { status: 'ok' });
    t.same(await queryOnce<{ n: number }>(proxy.readWriteUrl(), 'select 1 as n'), [{ n: 1 }], 'the proxy is unaffected');
  });
});
