// pgfloat's admin API as the benches use it: /status, and operations (switchover, rejoin) asked for, retried when refused, and followed to their end.

export interface AdminEndpoint {
  adminUrl: string;
  token: string;
}

export interface StatusView {
  primary: string | null;
  standbys: string[];
  phase: string;
  degenerate: boolean;
  nodes: Array<{ name: string; fenced: boolean; health: string }>;
}

export interface OperationView {
  id: string;
  state: 'running' | 'succeeded' | 'failed';
  startedAt: string;
  finishedAt: string | null;
  steps: Array<{ at: string; message: string }>;
  result: string | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function status(api: Pick<AdminEndpoint, 'adminUrl'>): Promise<StatusView> {
  return (await (await fetch(`${api.adminUrl}/status`)).json()) as StatusView;
}

export async function waitForStatus(api: Pick<AdminEndpoint, 'adminUrl'>, check: (s: StatusView) => boolean, timeoutMs: number, what: string): Promise<StatusView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(api).catch(() => undefined);
    if (s !== undefined && check(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

/** What a switchover needs: a primary and a streaming standby, nothing in progress. */
export const steadyWithStandby = (s: StatusView): boolean => s.phase === 'steady' && !s.degenerate && s.primary !== null && s.standbys.length > 0;

/** POST to an operation's endpoint (`/switchover`, `/rejoin/n1`): the HTTP status and the answer. */
async function requestOperation(api: AdminEndpoint, path: string, body: object): Promise<{ status: number; accepted: boolean; message: string; operation?: string }> {
  const res = await fetch(`${api.adminUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${api.token}` },
    body: JSON.stringify(body),
  });
  const answer = (await res.json()) as { accepted?: boolean; message?: string; operation?: string; error?: string };
  return { status: res.status, accepted: answer.accepted === true, message: answer.message ?? answer.error ?? '', operation: answer.operation };
}

/** Polls GET /operations/{id} until it ends; 50 ms apart, so its end is known within that. */
async function awaitOperation(api: AdminEndpoint, id: string, timeoutMs: number): Promise<OperationView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const op = (await (await fetch(`${api.adminUrl}/operations/${id}`)).json()) as OperationView;
    if (op.state !== 'running') return op;
    if (Date.now() > deadline) throw new Error(`operation ${id} still running after ${timeoutMs} ms: ${JSON.stringify(op.steps)}`);
    await sleep(50);
  }
}

export interface OperationRun {
  /** When the accepted request was sent (ms since the epoch). */
  requestedAt: number;
  /** Refused requests before it, "<HTTP status> <message>". */
  refusals: string[];
  /** How it ended; null when every request was refused. */
  operation: OperationView | null;
}

/**
 * Asks for an operation, again after `pauseMs` while it is refused (the last rejoined standby not
 * streaming yet, say) up to `attempts` times, then follows the accepted one to its end.
 */
export async function runOperation(api: AdminEndpoint, path: string, body: object, retry: { pauseMs: number; attempts: number }, onAccepted?: (id: string) => void): Promise<OperationRun> {
  const refusals: string[] = [];
  for (let tries = 1; ; tries++) {
    const requestedAt = Date.now();
    const answer = await requestOperation(api, path, body);
    if (answer.accepted && answer.operation !== undefined) {
      onAccepted?.(answer.operation);
      return { requestedAt, refusals, operation: await awaitOperation(api, answer.operation, 600_000) };
    }
    refusals.push(`${answer.status} ${answer.message}`);
    if (tries >= retry.attempts) return { requestedAt, refusals, operation: null };
    await sleep(retry.pauseMs);
  }
}

/** A switchover from the primary to the standby, as `switchoverToStandby` ran it. */
export interface SwitchoverRun {
  from: string;
  to: string;
  /** The new primary's PostgreSQL port: acknowledgements from it are writes on the new primary. */
  toPort: number;
  /** When the accepted POST /switchover was sent (ms since the epoch). */
  requestedAt: number;
  /** Refused requests before the accepted one (each retried after a pause). */
  refusals: string[];
  operation: OperationView;
}

/** Once the cluster is steady, a switchover to the standby, followed to its end; throws if every request is refused. */
export async function switchoverToStandby(
  api: AdminEndpoint,
  nodes: ReadonlyArray<{ name: string; port: number }>,
  retry: { pauseMs: number; attempts: number },
  onAccepted?: (from: string, to: string, operationId: string) => void,
): Promise<SwitchoverRun> {
  const from = (await waitForStatus(api, steadyWithStandby, 120_000, 'a steady cluster with a standby')).primary!;
  const to = nodes.find((n) => n.name !== from)!;
  const run = await runOperation(api, '/switchover', { to: to.name }, retry, (id) => onAccepted?.(from, to.name, id));
  if (run.operation === null) throw new Error(`switchover ${from}→${to.name} refused ${run.refusals.length} times: ${run.refusals.join('; ')}`);
  return { from, to: to.name, toPort: to.port, requestedAt: run.requestedAt, refusals: run.refusals, operation: run.operation };
}
