// Moves an idle session to another server: reads its state on the old one, logs in as its user on the new one without the password, restores and checks the state.

import type { Socket } from 'node:net';
import type { CapturedAuth } from '../auth/auth-capture';
import { loginSecretOf, type LoginSecret } from '../auth/login-secret';
import { LoginError, ServerLogin, type LoggedIn } from '../auth/server-login';
import type { NodeAddress } from '../cluster/node';
import { SqlState } from '../protocol/codes';
import type { Refusal } from '../protocol/refusal';
import type { Router } from '../routing/router';
import type { ListenerKind } from '../routing/routes';
import { ServerToClientPump, type RelayCounters } from './relay';
import { connectOnRoute, type RouteAttempt } from './server-connection';
import type { SessionLog } from './session-log';
import { terminateServer } from './session-end';
import { converse, exchange, firstError, singleValue } from './server-exchange';
import { CAPTURE_QUERY, changedReports, parseCapture, restoreMessages, stateDifferences, type SessionState } from './session-state';

/** Why a session did not move: the label of pgfloat_sessions_not_moved_total. */
export type MoveFailureReason =
  /** Its authentication cannot be done again without the client (cleartext, gss, channel binding...), or its secret could not be had. */
  | 'auth'
  /** It holds what cannot be restored (temporary tables, session advisory locks, LISTEN, holdable cursors). */
  | 'state'
  /** Its old server could not be asked for its state (down, hung), and pgfloat does not know it otherwise. */
  | 'state-unknown'
  /** Routing had no server for it (the hold ran out, no primary). */
  | 'no-route'
  /** The new server did not take the connection, the login or the restore; or the restored state differs. */
  | 'connect'
  | 'login'
  | 'restore'
  | 'verify'
  /** The client hung up while its session was moving. */
  | 'client-left';

/** Every label of pgfloat_sessions_not_moved_total, so each series exists from the start. */
export const MOVE_FAILURE_REASONS: readonly MoveFailureReason[] = ['auth', 'state', 'state-unknown', 'no-route', 'connect', 'login', 'restore', 'verify', 'client-left'];

/** What a session's move did, as the relay counts it. */
export type MoveEvent = 'started' | 'moved' | MoveFailureReason;

export class MoveError extends Error {
  constructor(
    readonly reason: MoveFailureReason,
    message: string,
    /** Routing's own refusal, when it had no server: the client is told that. */
    readonly refusal?: Refusal,
    /** The server was not ready for sessions (refused, starting up, shutting down): another may be soon. */
    readonly retry = false,
  ) {
    super(message);
    this.name = 'MoveError';
  }
}

/** sessions.move on: what moving needs beyond what every session has. */
export interface MoveSettings {
  /** Each conversation with a server (state, login, restore) must answer within this. */
  moveTimeoutMs: number;
  /** The role's pg_authid.rolpassword (verifier or md5 hash) by the auth query, asked of `node`; null when it has none. */
  rolePassword(user: string, node: string): Promise<string | null>;
}

export interface MoveEnvironment extends MoveSettings {
  router: Router;
  nodes: ReadonlyMap<string, NodeAddress>;
  counters: RelayCounters;
  connectTimeoutMs: number;
  keepaliveIdleMs: number;
  /** How long a read-write session may wait for a primary that takes it (failover.holdMs). */
  holdMs: number;
  /** A server refused the connection: worth a heartbeat now. */
  onServerUnreachable(node: string): void;
}

/** What the session was: enough to be it again on another server. */
export interface SessionIdentity {
  route: ListenerKind;
  user: string;
  /** The client's StartupMessage, as it sent it: the new server gets the same parameters. */
  startup: Buffer;
  auth: CapturedAuth;
  state: SessionState;
}

export interface Moved {
  node: NodeAddress;
  server: Socket;
  /** Reads the new server; diverted until the session starts relaying through it. */
  pump: ServerToClientPump;
  backend: LoggedIn;
  /** The state found on the new server after the restore. */
  state: SessionState;
  /** Reported settings the client must be told of, since their values differ from what it last saw. */
  reports: Array<[string, string]>;
}

/** The session's state, read on its own server connection; the session must be idle, and its client not reading from it. */
export async function readSessionState(server: Socket, pump: ServerToClientPump, timeoutMs: number): Promise<SessionState> {
  const answer = await exchange(server, pump, CAPTURE_QUERY, timeoutMs).catch((err: Error) => {
    throw new MoveError('state-unknown', `could not read the session's state: ${err.message}`);
  });
  try {
    return parseCapture(singleValue(answer));
  } catch (err) {
    throw new MoveError('state-unknown', `could not read the session's state: ${(err as Error).message}`);
  }
}

/** Where the session is leaving from: its server, still read by its pump, and its state if known without asking. */
export interface LeftServer {
  server: Socket;
  pump: ServerToClientPump;
  known: SessionState | undefined;
}

/**
 * The whole move: the state (asked of the old server unless known), the old server ended with a
 * Terminate, then the session opened again (reopenSession). Throws MoveError.
 */
export async function moveSession(
  env: MoveEnvironment,
  from: LeftServer,
  identityOf: (state: SessionState) => SessionIdentity,
  stillWanted: () => boolean,
  log: SessionLog,
): Promise<Moved> {
  let state = from.known;
  try {
    state ??= await readSessionState(from.server, from.pump, env.moveTimeoutMs);
  } finally {
    from.pump.stop();
    terminateServer(from.server);
  }
  return reopenSession(env, identityOf(state), stillWanted, log);
}

/**
 * Finds the session a server on its route as a new client would (connectOnRoute: held while
 * writes are held, waiting for routing while a primary refuses connections) and makes it the
 * same session there. `stillWanted` turning false (the client left) abandons it. Throws MoveError.
 */
async function reopenSession(env: MoveEnvironment, session: SessionIdentity, stillWanted: () => boolean, log: SessionLog): Promise<Moved> {
  const { auth } = session;
  if (auth.method === 'unmovable') throw new MoveError('auth', `its authentication cannot be repeated without the client: ${auth.why}`);
  if (session.state.unmovable.length > 0) throw new MoveError('state', `it holds what cannot move: ${session.state.unmovable.join(', ')}`);
  const deadline = Date.now() + env.holdMs;
  let failedNode: string | undefined;
  for (;;) {
    const { node, server, pump } = await reachRoute(env, session.route, deadline, failedNode, stillWanted, log);
    failedNode = undefined;
    try {
      const moved = await becomeSession(env, session, node, server, pump, await loginSecret(env, session, node.name));
      if (!stillWanted()) throw new MoveError('client-left', 'the client left');
      // Routing changed while the session was being restored (the node fenced, say): decide again.
      if (env.router.allows(session.route, node.name)) return moved;
    } catch (err) {
      server.destroy();
      // A primary still starting or already stopping: a read-write session waits for routing to change.
      if (!(err instanceof MoveError && err.retry) || session.route !== 'readWrite' || Date.now() >= deadline) throw err;
      failedNode = node.name;
      continue;
    }
    server.destroy();
  }
}

interface Reached {
  node: NodeAddress;
  server: Socket;
  pump: ServerToClientPump;
}

/** connectOnRoute's outcome as a promise: a connected server, or the MoveError that says why not. */
function reachRoute(env: MoveEnvironment, route: ListenerKind, deadline: number, failedNode: string | undefined, stillWanted: () => boolean, log: SessionLog): Promise<Reached> {
  return new Promise((resolve, reject) => {
    const attempt: RouteAttempt = {
      stillWanted,
      connecting: () => undefined,
      connected: (node, server, pump) => resolve({ node, server, pump }),
      refused: (refusal) =>
        reject(refusal.reason === 'backend-unreachable' ? new MoveError('connect', refusal.message) : new MoveError('no-route', refusal.message, refusal)),
    };
    // Ending without an outcome means the client left; after one, this rejection changes nothing.
    connectOnRoute(env, route, deadline, failedNode, attempt, log).then(() => reject(new MoveError('client-left', 'the client left')), reject);
  });
}

async function loginSecret(env: MoveEnvironment, session: SessionIdentity, node: string): Promise<LoginSecret> {
  if (session.auth.method === 'trust') return { method: 'trust' };
  const rolpassword = await env.rolePassword(session.user, node).catch((err: Error) => {
    throw new MoveError('auth', `the auth query failed: ${err.message}`);
  });
  const secret = loginSecretOf(session.auth, rolpassword);
  if ('error' in secret) throw new MoveError('auth', secret.error);
  return secret;
}

async function becomeSession(
  env: MoveEnvironment,
  session: SessionIdentity,
  node: NodeAddress,
  server: Socket,
  pump: ServerToClientPump,
  secret: LoginSecret,
): Promise<Moved> {
  const backend = await logIn(server, pump, new ServerLogin(session.startup, secret), env.moveTimeoutMs).catch((err: Error) => {
    const notReady = err instanceof LoginError && err.code === SqlState.cannotConnectNow;
    throw new MoveError('login', `could not log in to ${node.name} as ${session.user}: ${err.message}`, undefined, notReady);
  });
  if (!needsRestore(session.state, session.user)) {
    // The login alone makes it the same session (the same startup parameters): two round trips fewer.
    const state = { ...session.state, reported: Object.fromEntries(backend.parameters) };
    return { node, server, pump, backend, state, reports: changedReports(session.state, state) };
  }
  const restored = await exchange(server, pump, restoreMessages(session.state, session.user), env.moveTimeoutMs).catch((err: Error) => {
    throw new MoveError('restore', `restoring the session on ${node.name}: ${err.message}`);
  });
  const error = firstError(restored);
  if (error !== undefined) throw new MoveError('restore', `restoring the session on ${node.name}: ${error.message}`);
  const state = await readSessionState(server, pump, env.moveTimeoutMs).catch((err: Error) => {
    throw new MoveError('verify', err.message);
  });
  const differences = stateDifferences(session.state, state);
  if (differences.length > 0) throw new MoveError('verify', `the restored session differs on ${node.name}: ${differences.join('; ')}`);
  return { node, server, pump, backend, state, reports: changedReports(session.state, state) };
}

/** Whether the session changed anything its startup did not give it. */
function needsRestore(state: SessionState, user: string): boolean {
  return state.settings.length > 0 || state.role !== 'none' || state.sessionAuthorization !== user || state.statements.length > 0;
}

/** The login as a conversation: ServerLogin answers the server until ReadyForQuery. */
function logIn(server: Socket, pump: ServerToClientPump, login: ServerLogin, timeoutMs: number): Promise<LoggedIn> {
  return converse(server, pump, login.start(), timeoutMs, (chunk) => {
    const step = login.feed(chunk);
    if (step.done !== undefined && step.done.rest.length > 0) throw new Error('the server sent more than its startup answer');
    return step;
  });
}

/** Resolves true once routing no longer sends `route` to `node` (it failed over), false if it still does after `timeoutMs`. */
export async function awaitRoutingLeaves(router: Router, route: ListenerKind, node: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (router.allows(route, node)) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await router.waitForChange(left);
  }
  return true;
}
