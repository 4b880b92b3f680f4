// One handler per failover-core action: each starts its effect and turns the outcome back into an event for the core.

import type { CoreState, FailoverAction, FailoverEvent } from '../failover/types';
import { NodeUnreachableError } from '../postgres/admin-session';
import { SqlState } from '../protocol/codes';
import type { Refusal } from '../protocol/refusal';
import type { FailoverRunnerDeps } from './effects';

export type ActionHandlers = { [K in FailoverAction['type']]: (action: Extract<FailoverAction, { type: K }>) => void };

export interface HandlerContext {
  deps: FailoverRunnerDeps;
  /** Hands an outcome back to the core (a new step). */
  dispatch(event: FailoverEvent): void;
  core(): CoreState;
  now(): number;
  /** Records the store write in flight. */
  persisting(write: Promise<unknown>): void;
}

export function actionHandlers(ctx: HandlerContext): ActionHandlers {
  const { deps, dispatch, now } = ctx;
  const { log, servers, sessions } = deps;
  const epoch = (): number => ctx.core().cluster.epoch;
  return {
    log(action) {
      log[action.level]({ ...action.fields, epoch: action.fields.epoch ?? epoch() }, action.message);
      deps.progress(action.level, action.message);
    },

    'drop-sessions'(action) {
      const { node, because } = action;
      const refusal: Refusal =
        because === 'no-lease'
          ? {
              reason: 'no-lease',
              code: SqlState.adminShutdown,
              message: 'terminating connection: this pgfloat instance is cut off from etcd and may no longer route writes; reconnect (another instance may serve you)',
            }
          : { reason: 'fenced', code: SqlState.adminShutdown, message: `terminating connection: ${node} is fenced (${action.reason})` };
      void sessions.dropNode(node, refusal).then((dropped) => {
        if (because === 'no-lease') {
          log.error({ node, sessions: dropped, reason: action.reason, epoch: epoch() }, 'dropped every client session on the primary: no etcd lease');
        } else {
          log.warn({ node, sessions: dropped, reason: action.reason, epoch: epoch() }, 'dropped every client session on the node');
        }
        dispatch({ type: 'sessions-dropped', at: now(), node, sessions: dropped });
      });
    },

    fence(action) {
      const fields = { node: action.node, epoch: epoch() };
      servers.fence(action.node).then(
        (done) => {
          log.warn({ ...fields, result: done }, 'fencing action applied');
          deps.fenced(action.node, 'applied');
        },
        (err: Error) => {
          // An sql fencing of a node that is down has nothing to act on: expected in a failover, not an alarm.
          if (err instanceof NodeUnreachableError) {
            log.warn({ ...fields, err: err.message }, 'fencing action could not reach the node; it stays fenced at the proxy');
            deps.fenced(action.node, 'unreachable');
          } else {
            log.error({ ...fields, err: err.message }, 'fencing action failed; the node stays fenced at the proxy');
            deps.fenced(action.node, 'failed');
          }
        },
      );
    },

    promote(action) {
      const node = action.node;
      servers.promote(node).then(
        async (names) => {
          // The node is a primary now whatever happens here; a failure only means commits may wait.
          const current = ctx.core().cluster.synchronousLifted;
          const lifted = await servers.afterPromotion(node, names, current).catch((err: Error) => {
            log.error({ node, err: err.message, epoch: epoch() }, 'after the promotion: could not check synchronous replication');
            return current;
          });
          dispatch({ type: 'promoted', at: now(), node, synchronousLifted: lifted });
          // Verification waits for a heartbeat that sees the new timeline: take it now.
          servers.expedite(node);
        },
        (err: Error) => dispatch({ type: 'promotion-failed', at: now(), node, error: err.message }),
      );
    },

    'drain-sessions'(action) {
      const refusal: Refusal = {
        reason: 'switchover',
        code: SqlState.adminShutdown,
        message: `terminating connection: the primary ${action.node} is switching over to another server; reconnect`,
      };
      sessions.drainNode(action.node, refusal, action.drainMs).then(
        ({ atBoundary, cut }) => dispatch({ type: 'drained', at: now(), node: action.node, atBoundary, cut }),
        (err: Error) => {
          log.error({ node: action.node, err: err.message, epoch: epoch() }, 'draining sessions failed; cutting them');
          void sessions.dropNode(action.node, refusal).then((cut) => dispatch({ type: 'drained', at: now(), node: action.node, atBoundary: 0, cut }));
        },
      );
    },

    'stop-writes'(action) {
      servers.stopWrites(action.node, action.target, (message) => deps.progress('info', `switchover: ${message}`)).then(
        (finalLsn) => dispatch({ type: 'writes-stopped', at: now(), node: action.node, finalLsn }),
        (err: Error) => dispatch({ type: 'stop-writes-failed', at: now(), node: action.node, error: err.message }),
      );
    },

    'await-replay'(action) {
      servers.awaitReplay(action.node, action.lsn, action.timeoutMs).then(
        () => dispatch({ type: 'caught-up', at: now(), node: action.node, lsn: action.lsn }),
        (err: Error) => dispatch({ type: 'catch-up-failed', at: now(), node: action.node, error: err.message }),
      );
    },

    'resume-writes'(action) {
      servers.resumeWrites(action.node, (message) => deps.progress('info', `switchover rollback: ${message}`)).then(
        () => dispatch({ type: 'writes-resumed', at: now(), node: action.node }),
        (err: Error) => dispatch({ type: 'writes-resumed', at: now(), node: action.node, error: err.message }),
      );
    },

    persist(action) {
      const write = async (): Promise<FailoverEvent> => {
        try {
          const written = await deps.store.compareAndSet(action.expectedRevision, action.cluster);
          // Someone else wrote first: take their state, then let the core decide again.
          return { type: 'persisted', at: now(), cluster: written ?? (await deps.store.load()) };
        } catch (err) {
          return { type: 'persist-failed', at: now(), error: (err as Error).message };
        }
      };
      ctx.persisting(write().then(dispatch));
    },
  };
}
