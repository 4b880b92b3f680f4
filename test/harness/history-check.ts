// The history checker: after a fault, what every node holds against what the writers were told and what pgfloat routed.

import { tryQuery } from './faults';
import { HISTORY_TABLE, type AckedWrite, type HistoryLog } from './history';
import type { LogLine } from './log-capture';

export interface CheckedNode {
  name: string;
  /** The server's own port: what inet_server_port() reported to the writers. */
  port: number;
  connectionString(): string;
}

export interface HistoryExpectations {
  /** synchronous_standby_names was set: no acknowledged write may be lost at all. */
  synchronous: boolean;
  /** failover.maxLagBytes: how far past the promotion point the lost writes may reach (asynchronous). */
  maxLagBytes: number;
  /** When the fault was injected, for the failover time. */
  faultAt?: number;
  /** An operator accepted the loss (failover --allow-data-loss): no bound on it. */
  allowDataLoss?: boolean;
}

/** One pgfloat instance's log, or several (a restarted or second instance); `endedAt` for one that was killed. */
export interface InstanceLog {
  name: string;
  lines: LogLine[];
  endedAt?: number;
}

export interface HistoryReport {
  finalPrimary: string;
  acked: number;
  failed: number;
  /** SQLSTATE of each failed write, counted. */
  failedCodes: Record<string, number>;
  unknown: number;
  connectFailures: number;
  /** Acknowledged writes missing on the final primary. */
  lost: AckedWrite[];
  /** Lost writes that were not in the unreplicated tail of a promotion (a bug whatever the replication mode). */
  lostBeforePromotionPoint: AckedWrite[];
  /** Bytes from the last promotion point to the furthest lost write. */
  lostSpanBytes: number;
  /** Acknowledged by a node after pgfloat fenced it. */
  ackedAfterFence: AckedWrite[];
  /** Rows on a fenced node, inserted after its fence, whose writer never got an answer (a hung server's queued statement). */
  unknownAfterFence: Array<{ node: string; client: number; seq: number; at: number }>;
  /** Writes answered with an ERROR that are on the final primary anyway. */
  failedButCommitted: Array<{ client: number; seq: number }>;
  /** Moments at which the pgfloat logs routed writes to two different nodes. */
  twoPrimaries: Array<{ at: number; primaries: string[] }>;
  /** From the fault to the first write acknowledged by the final primary after it. */
  failoverMs?: number;
  /** Nodes that could not be read (down). */
  unreadable: string[];
  /** Failures of the properties above, in words; empty when the history is clean. */
  violations: string[];
}

interface Row {
  client: number;
  seq: number;
  at: number;
}

/** Reads every node and judges the history; `violations` lists what must not happen. */
export async function checkHistory(
  log: HistoryLog,
  nodes: readonly CheckedNode[],
  finalPrimary: string,
  instances: readonly InstanceLog[],
  expect: HistoryExpectations,
): Promise<HistoryReport> {
  const rowsByNode = new Map<string, Row[] | undefined>();
  for (const node of nodes) rowsByNode.set(node.name, await readRows(node));
  const unreadable = [...rowsByNode].filter(([, rows]) => rows === undefined).map(([name]) => name);
  const primaryNode = nodes.find((n) => n.name === finalPrimary);
  const onPrimary = rowsByNode.get(finalPrimary);
  if (primaryNode === undefined || onPrimary === undefined) throw new Error(`the final primary ${finalPrimary} cannot be read`);
  const present = new Set(onPrimary.map(key));

  const lost = log.acked.filter((w) => !present.has(key(w)));
  const switchpoint = await lastSwitchpoint(primaryNode);
  const lostBeforePromotionPoint = switchpoint === undefined ? lost : lost.filter((w) => lsnBytes(w.lsn) < switchpoint);
  const lostSpanBytes = switchpoint === undefined || lost.length === 0 ? 0 : Math.max(...lost.map((w) => lsnBytes(w.lsn) - switchpoint));

  const fences = fencePeriods(instances);
  const portOf = new Map(nodes.map((n) => [n.name, n.port]));
  const fencedAt = (node: string, at: number): boolean => fences.some((f) => f.node === node && at > f.from && at < f.to);
  const ackedAfterFence = log.acked.filter((w) => fences.some((f) => portOf.get(f.node) === w.port && fencedAt(f.node, w.at)));
  const unknownKeys = new Set(log.unknown.map(key));
  const ackedKeys = new Set(log.acked.map(key));
  const unknownAfterFence: HistoryReport['unknownAfterFence'] = [];
  const strayAfterFence: Array<Row & { node: string }> = [];
  for (const [node, rows] of rowsByNode) {
    for (const row of rows ?? []) {
      if (present.has(key(row)) || !fencedAt(node, row.at)) continue;
      if (unknownKeys.has(key(row))) unknownAfterFence.push({ node, ...row });
      else if (!ackedKeys.has(key(row))) strayAfterFence.push({ node, ...row });
    }
  }
  const failedButCommitted = log.failed.filter((w) => present.has(key(w))).map(({ client, seq }) => ({ client, seq }));
  const twoPrimaries = routedPrimaries(instances);
  const firstAfter = expect.faultAt === undefined ? undefined : log.acked.find((w) => w.ackAt >= expect.faultAt! && w.port === primaryNode.port);

  const violations: string[] = [];
  if (expect.synchronous && lost.length > 0) violations.push(`${lost.length} acknowledged writes lost with synchronous replication`);
  if (lostBeforePromotionPoint.length > 0) violations.push(`${lostBeforePromotionPoint.length} lost writes lie before the promotion point: they had reached the new primary's timeline`);
  if (!expect.synchronous && !expect.allowDataLoss && lostSpanBytes > expect.maxLagBytes) violations.push(`lost writes reach ${lostSpanBytes} bytes past the promotion point, over maxLagBytes ${expect.maxLagBytes}`);
  if (ackedAfterFence.length > 0) violations.push(`${ackedAfterFence.length} writes acknowledged by a node after it was fenced`);
  if (strayAfterFence.length > 0) violations.push(`${strayAfterFence.length} rows on a fenced node, inserted after the fence, that no writer sent`);
  if (failedButCommitted.length > 0) violations.push(`${failedButCommitted.length} writes answered with an ERROR are committed`);
  if (twoPrimaries.length > 0) violations.push(`writes routed to two nodes at once: ${JSON.stringify(twoPrimaries[0])}`);
  return {
    finalPrimary,
    acked: log.acked.length,
    failed: log.failed.length,
    failedCodes: log.failed.reduce<Record<string, number>>((out, w) => ((out[w.code ?? '?'] = (out[w.code ?? '?'] ?? 0) + 1), out), {}),
    unknown: log.unknown.length,
    connectFailures: log.connectFailures.length,
    lost,
    lostBeforePromotionPoint,
    lostSpanBytes,
    ackedAfterFence,
    unknownAfterFence,
    failedButCommitted,
    twoPrimaries,
    failoverMs: firstAfter === undefined ? undefined : firstAfter.ackAt - expect.faultAt!,
    unreadable,
    violations,
  };
}

/** Acknowledged writes the node does not hold; undefined when it cannot be read. */
export async function missingFrom(node: CheckedNode, acked: readonly AckedWrite[]): Promise<AckedWrite[] | undefined> {
  const rows = await readRows(node);
  if (rows === undefined) return undefined;
  const present = new Set(rows.map(key));
  return acked.filter((w) => !present.has(key(w)));
}

/** One line for a test's output. */
export function describeReport(r: HistoryReport): string {
  const lostNote = r.lost.length > 0 ? ` (${r.lostSpanBytes} bytes past the promotion point)` : '';
  return (
    `final primary ${r.finalPrimary}; acknowledged ${r.acked}, failed ${r.failed}${r.failed ? ` ${JSON.stringify(r.failedCodes)}` : ''}, unknown ${r.unknown}, failed connects ${r.connectFailures}; ` +
    `lost ${r.lost.length}${lostNote}; queued writes run by a fenced node ${r.unknownAfterFence.length}` +
    (r.failoverMs !== undefined ? `; failover ${r.failoverMs} ms` : '') +
    (r.unreadable.length ? `; unreadable: ${r.unreadable.join(', ')}` : '') +
    (r.violations.length ? `; VIOLATIONS: ${r.violations.join('; ')}` : '')
  );
}

async function readRows(node: CheckedNode): Promise<Row[] | undefined> {
  const rows = await tryQuery<{ client: number; seq: number; at: Date }>(node.connectionString(), `SELECT client, seq, at FROM ${HISTORY_TABLE}`);
  return rows?.map((r) => ({ client: r.client, seq: r.seq, at: r.at.getTime() }));
}

/** Where the final primary's timeline branched off the last one (its newest .history file), in bytes. */
async function lastSwitchpoint(node: CheckedNode): Promise<number | undefined> {
  const rows = await tryQuery<{ timeline: number }>(node.connectionString(), 'SELECT timeline_id AS timeline FROM pg_control_checkpoint()');
  const current = await tryQuery<{ name: string }>(node.connectionString(), 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS name');
  // After a promotion the checkpoint may still show the old timeline; the current WAL file's name does not.
  const timeline = Math.max(rows?.[0]?.timeline ?? 1, parseInt(current?.[0]?.name.slice(0, 8) ?? '1', 16));
  if (timeline <= 1) return undefined;
  const file = `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
  const history = await tryQuery<{ text: string }>(node.connectionString(), 'SELECT pg_read_file($1) AS text', [file]);
  const lines = (history?.[0]?.text ?? '').split('\n').filter((l) => /^\d+\s/.test(l));
  const last = lines.at(-1)?.split(/\s+/)[1];
  return last === undefined ? undefined : lsnBytes(last);
}

/**
 * From each fence in the pgfloat logs (sessions dropped by a failover, or a switchover's recorded
 * fence) until the node is routed writes again (a later switchover back to it).
 */
function fencePeriods(instances: readonly InstanceLog[]): Array<{ node: string; from: number; to: number }> {
  const lines = instances.flatMap((i) => i.lines).sort((a, b) => a.at - b.at);
  const open = new Map<string, number>();
  const out: Array<{ node: string; from: number; to: number }> = [];
  for (const line of lines) {
    const fenced = line.msg === 'dropped every client session on the node' ? line.node : line.msg.startsWith('switchover: fence recorded') ? line.oldPrimary : undefined;
    if (typeof fenced === 'string' && !open.has(fenced)) open.set(fenced, line.at);
    if (line.component === 'router' && typeof line.primary === 'string' && open.has(line.primary)) {
      out.push({ node: line.primary, from: open.get(line.primary)!, to: line.at });
      open.delete(line.primary);
    }
  }
  for (const [node, from] of open) out.push({ node, from, to: Infinity });
  return out;
}

/**
 * Every routing line (`routing changed`, `no verified primary...`, `split brain...`) carries the
 * instance's primary; an instance routes to its last one until its next line or its end.
 */
function routedPrimaries(instances: readonly InstanceLog[]): HistoryReport['twoPrimaries'] {
  const changes: Array<{ at: number; instance: string; primary: string | null }> = [];
  for (const instance of instances) {
    for (const line of instance.lines) {
      if (line.component === 'router' && 'primary' in line && line.msg !== 'releasing held read-write clients') {
        changes.push({ at: line.at, instance: instance.name, primary: (line.primary as string | null) ?? null });
      }
    }
    if (instance.endedAt !== undefined) changes.push({ at: instance.endedAt, instance: instance.name, primary: null });
  }
  changes.sort((a, b) => a.at - b.at);
  const current = new Map<string, string | null>();
  const out: HistoryReport['twoPrimaries'] = [];
  for (const change of changes) {
    current.set(change.instance, change.primary);
    const primaries = [...new Set([...current.values()].filter((p): p is string => p !== null))];
    if (primaries.length > 1) out.push({ at: change.at, primaries });
  }
  return out;
}

function key(w: { client: number; seq: number }): string {
  return `${w.client}/${w.seq}`;
}

/** 'X/Y' as a byte position (safe as a double well beyond any test's WAL). */
export function lsnBytes(lsn: string): number {
  const [hi, lo] = lsn.split('/');
  return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16);
}
