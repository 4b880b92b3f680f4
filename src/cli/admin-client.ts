// The CLI side of the admin API: `pgfloat status`, `switchover`, `failover`, `rejoin`, `adopt`, `fence`, `unfence`, `reload` call it over HTTP.

import Table from 'cli-table3';
import type { NodeStatus, PgfloatStatus } from '../admin/status';

export interface AdminTarget {
  url: string;
  token: string | undefined;
}

export class CliError extends Error {}

async function call(target: AdminTarget, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  let response: Response;
  try {
    response = await fetch(new URL(path, target.url), {
      method,
      headers: {
        ...(target.token ? { authorization: `Bearer ${target.token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new CliError(`cannot reach the admin API at ${target.url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`);
  }
  const text = await response.text();
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new CliError(`unexpected answer from ${target.url}${path} (HTTP ${response.status}): ${text.slice(0, 200)}`);
  }
  return { status: response.status, json };
}

export async function fetchStatus(target: AdminTarget): Promise<PgfloatStatus> {
  const { status, json } = await call(target, 'GET', '/status');
  if (status !== 200) throw new CliError(`GET /status answered HTTP ${status}: ${String(json.error ?? '')}`);
  return json as unknown as PgfloatStatus;
}

export function formatStatus(s: PgfloatStatus): string {
  const table = new Table({
    head: ['node', 'address', 'health', 'role', 'fenced', 'timeline', 'lsn', 'lag: received / replayed', 'sessions', 'tls', 'last error'],
    style: { head: [], border: [] },
  });
  for (const n of s.nodes) {
    table.push([
      n.name + (n.name === s.primary ? ' *' : ''),
      `${n.host}:${n.port}`,
      n.health,
      n.roguePrimary ? 'ROGUE primary' : n.role,
      n.fenced ? 'yes' : 'no',
      n.timeline ?? '-',
      n.lsn ?? '-',
      n.role === 'standby' ? `${n.receiveLagBytes ?? '-'} / ${n.replayLagBytes ?? '-'}` : '-',
      n.sessions,
      formatTls(n),
      // A refused certificate says which check failed; the raw error would only name the TLS code.
      n.tls?.error ?? n.lastError ?? '',
    ]);
  }
  const lines = [
    `epoch ${s.epoch}, phase ${s.phase}, read-write: ${s.readWrite}`,
    `primary: ${s.primary ?? 'none'}; read-only: ${s.standbys.length ? s.standbys.join(', ') : 'none'}; clients: ${s.clients.readWrite} read-write, ${s.clients.readOnly} read-only`,
  ];
  if (s.workers) {
    const each = s.workers.map((w) => `#${w.slot} ${w.state === 'ready' ? `${w.sessions} sessions` : w.state}${w.restarts > 0 ? `, restarted ${w.restarts}x` : ''}`);
    lines.push(`relay workers: ${each.join('; ')}`);
  }
  const moves = s.sessionMoves;
  const notMoved = Object.entries(moves.notMoved).filter(([, n]) => n > 0);
  if (moves.moving + moves.moved + notMoved.length > 0) {
    const why = notMoved.length > 0 ? ` (${notMoved.map(([reason, n]) => `${reason} ${n}`).join(', ')})` : '';
    lines.push(`sessions moved: ${moves.moved}; moving now: ${moves.moving}; closed because they could not move: ${notMoved.reduce((a, [, n]) => a + n, 0)}${why}`);
  }
  if (s.operation) lines.push(`running: ${s.operation.kind}${s.operation.node ? ` ${s.operation.node}` : ''} (${s.operation.id}) since ${s.operation.startedAt}: ${s.operation.lastStep ?? ''}`);
  if (s.lastOutcome && !s.lastOutcome.ok) lines.push(`last ${s.lastOutcome.planned ? 'switchover' : 'failover'} failed at ${s.lastOutcome.at}: ${s.lastOutcome.message}`);
  if (s.failoverBlocked) lines.push(`failover blocked: ${s.failoverBlocked}`);
  if (s.degenerate) lines.push(`degenerate (one server) since ${s.degenerateSince}: rejoin the fenced node as a standby`);
  if (s.splitBrain) lines.push('SPLIT BRAIN: several nodes claim primary; resolve with `pgfloat adopt NODE`');
  if (s.lastFailover) lines.push(`last failover: ${s.lastFailover.at} ${s.lastFailover.oldPrimary ?? '-'} -> ${s.lastFailover.newPrimary} (${s.lastFailover.reason})`);
  if (s.coordination && !s.coordination.connected) lines.push(`NO ETCD LEASE: this instance routes no writes (${s.coordination.reason ?? 'unknown'})`);
  return `${lines.join('\n')}\n${table.toString()}\n${s.instances ? formatInstances(s) : ''}`;
}

/** "verify-full encrypted", "verify-ca FAILED": the node's serverTls.mode and what pgfloat's last connection negotiated. */
function formatTls(n: NodeStatus): string {
  // An older instance's /status has no tls.
  if (n.tls === undefined) return '-';
  return `${n.tls.mode} ${n.tls.state === 'failed' ? 'FAILED' : n.tls.state}`;
}

/** One row per pgfloat instance: whether it decides, what it sees of each node, the state revision it applied. */
function formatInstances(s: PgfloatStatus): string {
  const names = s.nodes.map((n) => n.name);
  const table = new Table({ head: ['instance', 'decider', ...names.map((n) => `sees ${n}`), 'applied revision', 'admin'], style: { head: [], border: [] } });
  for (const i of s.instances ?? []) {
    table.push([i.name + (i.self ? ' (this)' : ''), i.decider ? 'yes' : 'no', ...names.map((n) => i.view[n] ?? '-'), i.appliedRevision, i.admin ?? '-']);
  }
  return `${table.toString()}\n`;
}

export async function operate(target: AdminTarget, path: string, body?: unknown): Promise<{ message: string; operation?: string }> {
  const { status, json } = await call(target, 'POST', path, body ?? {});
  const message = String(json.message ?? json.error ?? `HTTP ${status}`);
  if (status === 202) return { message, operation: typeof json.operation === 'string' ? json.operation : undefined };
  throw new CliError(message);
}

/** POST /reload: resolves with the answer's message when every relay loop reloaded, throws it otherwise. */
export async function reload(target: AdminTarget): Promise<string> {
  const { status, json } = await call(target, 'POST', '/reload', {});
  const message = String(json.message ?? json.error ?? `HTTP ${status}`);
  if (status === 200) return message;
  throw new CliError(message);
}

interface OperationView {
  state: 'running' | 'succeeded' | 'failed';
  steps: { at: string; message: string }[];
  result: string | null;
}

/**
 * Prints a long operation's steps as they happen, until it ends. Resolves with its result when
 * it succeeded; throws a CliError with the reason (one line) when it failed.
 */
export async function follow(target: AdminTarget, id: string, print: (line: string) => void, pollMs = 200): Promise<string> {
  let shown = 0;
  for (;;) {
    const { status, json } = await call(target, 'GET', `/operations/${encodeURIComponent(id)}`);
    if (status !== 200) throw new CliError(`GET /operations/${id} answered HTTP ${status}: ${String(json.error ?? '')}`);
    const op = json as unknown as OperationView;
    const finished = op.state !== 'running';
    // The final step is the result itself: it is printed (or thrown) once, below.
    const printable = finished ? op.steps.length - 1 : op.steps.length;
    for (; shown < printable; shown++) print(`${op.steps[shown]!.at.slice(11, 23)}  ${op.steps[shown]!.message}`);
    if (op.state === 'succeeded') return op.result ?? 'done';
    if (op.state === 'failed') throw new CliError(op.result ?? 'failed');
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
