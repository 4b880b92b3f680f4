// The operator's long procedures: switchover (then rejoin of the old primary), failover, rejoin; each an Operation with progress.

import type { CoreState, OperatorCommand, Outcome } from '../failover/types';
import type { ServerAdmin } from '../postgres/server-admin';
import type { Operation, OperationKind, Operations } from './operations';
import type { NodeAddress } from '../cluster/node';

/** What a managed node offers the procedures (see src/management). */
export interface Rejoinable {
  rejoin(primary: NodeAddress, options: { rebuild: boolean }, progress: (message: string) => void): Promise<string>;
}

export interface ProcedureContext {
  operations: Operations;
  nodes: ReadonlyMap<string, NodeAddress>;
  admin: ServerAdmin;
  /** The failover core's state, or undefined with failover disabled. */
  core(): CoreState | undefined;
  /** Hands a command to the core; its answer. */
  command(op: OperatorCommand): { accepted: boolean; message: string };
  /** Resolves with the core's state once `predicate` holds (checked after every step), rejects after `timeoutMs`. */
  waitForCore(predicate: (core: CoreState) => boolean, timeoutMs: number, what: string): Promise<CoreState>;
  manager(node: string): Rejoinable | undefined;
  /** Heartbeats a node now. */
  expedite(node: string): void;
  /** How long the core may take to finish a switchover or failover it accepted. */
  outcomeTimeoutMs: number;
  rejoinTimeoutMs: number;
  adminTimeoutMs: number;
}

export interface ProcedureAnswer {
  accepted: boolean;
  message: string;
  operation?: string;
}

function begin(ctx: ProcedureContext, kind: OperationKind, node: string | undefined): Operation | ProcedureAnswer {
  if (ctx.core() === undefined) return { accepted: false, message: 'refused: failover is disabled (failover.enabled: false)' };
  const op = ctx.operations.begin(kind, node);
  return typeof op === 'string' ? { accepted: false, message: op } : op;
}

export async function switchover(ctx: ProcedureContext, request: { to?: string; force: boolean }): Promise<ProcedureAnswer> {
  const op = begin(ctx, 'switchover', request.to);
  if (!('record' in op)) return op;
  const core = ctx.core()!;
  const primary = core.cluster.primary;
  const target = request.to ?? core.names.find((n) => n !== primary && core.nodes[n]?.inRecovery === true && !core.cluster.fenced.includes(n));
  let logicalSlots: string[] = [];
  if (primary !== undefined && target !== undefined) {
    op.progress(`preflight: checking logical replication slots on ${primary}`);
    try {
      logicalSlots = await ctx.admin.slotsLostBySwitchover(ctx.nodes.get(primary)!, ctx.nodes.get(target)!, ctx.adminTimeoutMs);
    } catch (err) {
      return refuse(op, `refused: could not check the logical replication slots on ${primary}: ${(err as Error).message}`);
    }
  }
  return handOver(ctx, op, { command: 'switchover', to: request.to, force: request.force, logicalSlots }, async (outcome) => {
    const old = outcome.oldPrimary;
    const manager = ctx.manager(old);
    if (manager === undefined) {
      return op.succeed(
        `${outcome.target} is the primary; ${old} is fenced and must be rejoined as a standby by hand (it is not managed: set nodes[].dataDir or nodes[].commands)`,
      );
    }
    try {
      const method = await rejoinAndUnfence(ctx, op, old, false, manager);
      op.succeed(`${outcome.target} is the primary; ${old} follows it as a standby (${method})`);
    } catch (err) {
      op.fail(`${outcome.target} is the primary, but rejoining ${old} failed: ${(err as Error).message}; the cluster runs on one server: run pgfloat rejoin ${old} [--rebuild]`);
    }
  });
}

export async function failover(ctx: ProcedureContext, request: { to?: string; allowDataLoss: boolean }): Promise<ProcedureAnswer> {
  const op = begin(ctx, 'failover', request.to);
  if (!('record' in op)) return op;
  return handOver(ctx, op, { command: 'failover', to: request.to, allowDataLoss: request.allowDataLoss }, async (outcome) => {
    op.succeed(`${outcome.message}; ${outcome.oldPrimary} is fenced until it is rejoined`);
  });
}

export async function rejoin(ctx: ProcedureContext, node: string, rebuild: boolean): Promise<ProcedureAnswer> {
  const core = ctx.core();
  if (core === undefined) return { accepted: false, message: 'refused: failover is disabled (failover.enabled: false)' };
  if (core.cluster.primary === node) return { accepted: false, message: `refused: ${node} is the primary` };
  const manager = ctx.manager(node);
  if (manager === undefined) return { accepted: false, message: `refused: ${node} is not managed (set nodes[].dataDir, or nodes[].commands.rejoin)` };
  if (core.phase.kind !== 'steady' || core.cluster.primary === undefined) return { accepted: false, message: `refused: no verified primary to follow (${core.phase.kind})` };
  const op = begin(ctx, 'rejoin', node);
  if (!('record' in op)) return op;
  void rejoinAndUnfence(ctx, op, node, rebuild, manager).then(
    (method) => op.succeed(`${node} follows ${ctx.core()?.cluster.primary ?? 'the primary'} as a standby (${method})`),
    (err: Error) => op.fail(`rejoining ${node} failed: ${err.message}`),
  );
  return { accepted: true, message: `rejoining ${node}${rebuild ? ' from a fresh base backup' : ''}`, operation: op.record.id };
}

/** Gives the core the command, then follows it in the background until it reports an outcome. */
function handOver(ctx: ProcedureContext, op: Operation, command: OperatorCommand, onSuccess: (outcome: Outcome) => Promise<void>): ProcedureAnswer {
  const before = JSON.stringify(ctx.core()?.lastOutcome ?? null);
  const answer = ctx.command(command);
  if (!answer.accepted) return refuse(op, answer.message);
  op.progress(answer.message);
  const settled = (core: CoreState): boolean => core.lastOutcome !== undefined && JSON.stringify(core.lastOutcome) !== before;
  void ctx
    .waitForCore(settled, ctx.outcomeTimeoutMs, `the ${command.command} to finish`)
    .then(async (core) => {
      const outcome = core.lastOutcome!;
      if (!outcome.ok) return op.fail(outcome.message);
      await onSuccess(outcome);
    })
    .catch((err: Error) => op.fail(`${err.message}; see pgfloat status`));
  return { accepted: true, message: answer.message, operation: op.record.id };
}

function refuse(op: Operation, message: string): ProcedureAnswer {
  op.fail(message);
  return { accepted: false, message, operation: op.record.id };
}

/** The node becomes a streaming standby of the current primary, then is unfenced (even if an operator had fenced it: rejoining is the answer to that). */
async function rejoinAndUnfence(ctx: ProcedureContext, op: Operation, node: string, rebuild: boolean, manager: Rejoinable): Promise<string> {
  const primaryName = ctx.core()?.cluster.primary;
  if (primaryName === undefined) throw new Error('no primary recorded');
  const primary = ctx.nodes.get(primaryName)!;
  op.progress(`rejoining ${node} as a standby of ${primaryName}${rebuild ? ' (rebuild)' : ''}`);
  const method = await withTimeout(
    manager.rejoin(primary, { rebuild }, (message) => op.progress(message)),
    ctx.rejoinTimeoutMs,
    `rejoin of ${node} (management.rejoinTimeoutMs)`,
  );
  op.progress(`${node} streams from ${primaryName}; lifting its fence`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const core = ctx.core();
    if (core === undefined || !core.cluster.fenced.includes(node)) break;
    // Not before pgfloat itself has seen it in recovery: its last heartbeat may still say primary,
    // and unfencing it then would make two claimants for a moment.
    const seen = core.nodes[node];
    if (seen?.status !== 'up' || seen.inRecovery !== true) {
      ctx.expedite(node);
      if (Date.now() > deadline) throw new Error(`${node} streams but pgfloat has not seen it in recovery within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    // The core unfences a rejoined standby by itself, except one an operator fenced.
    if (!core.persisting && core.phase.kind === 'steady') ctx.command({ command: 'unfence', node });
    if (Date.now() > deadline) throw new Error(`${node} streams but was not unfenced within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return method;
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
