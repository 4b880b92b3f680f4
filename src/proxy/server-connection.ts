// Opens the TCP connection from pgfloat to a PostgreSQL server for one client session; for a new session, on the node routing decides for it.

import type { Socket } from 'node:net';
import type { NodeAddress } from '../cluster/node';
import { SqlState } from '../protocol/codes';
import type { Refusal } from '../protocol/refusal';
import type { Router } from '../routing/router';
import type { ListenerKind } from '../routing/routes';
import { ServerToClientPump, type RelayCounters } from './relay';
import { openServerSocket } from './server-socket';
import type { SessionLog } from './session-log';

export interface PendingConnection {
  /** Abandons the attempt at any step (`connected` then rejects). */
  abandon(): void;
  /** Resolves once the server may be sent the startup packet; rejects on refusal, failed verification, error, close or `connectTimeoutMs`. */
  connected: Promise<Socket>;
}

/**
 * A plaintext socket reads straight into `pump`'s buffer (see ServerToClientPump); a TLS one, or
 * one that asked for TLS and was told no, through 'data' events.
 */
export function connectToServer(node: NodeAddress, pump: ServerToClientPump, opts: { connectTimeoutMs: number; keepaliveIdleMs: number }): PendingConnection {
  const pending = openServerSocket(node, opts, pump.onread);
  const connected = pending.opened.then(({ socket, events }) => {
    socket.once('close', () => pump.release());
    if (events) pump.readEvents(socket);
    return socket;
  });
  return { abandon: pending.abandon, connected };
}

/** What connecting a new session on its route needs of the relay (a SessionEnvironment has it all). */
export interface RouteConnectEnvironment {
  router: Router;
  nodes: ReadonlyMap<string, NodeAddress>;
  counters: RelayCounters;
  connectTimeoutMs: number;
  keepaliveIdleMs: number;
  onServerUnreachable(node: string): void;
}

/** The session's side of connectOnRoute. Each outcome is called in the same step as the check that leads to it. */
export interface RouteAttempt {
  /** False once the client has gone: the attempt stops, and a server connected meanwhile is destroyed. */
  stillWanted(): boolean;
  /** How to abandon the attempt while it connects, so a client leaving can; undefined once it has settled. */
  connecting(abandon: (() => void) | undefined): void;
  connected(node: NodeAddress, server: Socket, pump: ServerToClientPump): void;
  refused(refusal: Refusal): void;
}

/**
 * Decides a node for `route` and connects to it. A primary that refuses connections is usually
 * one that just died: a read-write client then waits, until `deadline`, for routing to change
 * instead of failing at once; `failedNode` is one it already found so.
 */
export async function connectOnRoute(
  env: RouteConnectEnvironment,
  route: ListenerKind,
  deadline: number,
  failedNode: string | undefined,
  attempt: RouteAttempt,
  log: SessionLog,
): Promise<void> {
  if (failedNode !== undefined) {
    env.onServerUnreachable(failedNode);
    await env.router.waitForChange(Math.min(deadline - Date.now(), 1000));
  }
  for (;;) {
    const decision = await env.router.decide(route);
    if (!attempt.stillWanted()) return; // the client went away while we waited
    if (!decision.ok) return attempt.refused(decision.refusal);
    const node = env.nodes.get(decision.node)!;
    const pump = new ServerToClientPump(env.counters);
    let server: Socket;
    try {
      const pending = connectToServer(node, pump, env);
      attempt.connecting(pending.abandon);
      server = await pending.connected.finally(() => attempt.connecting(undefined));
    } catch (err) {
      if (!attempt.stillWanted()) return;
      const retry = route === 'readWrite' && Date.now() < deadline;
      log.debug({ node: node.name, err: (err as Error).message, retry }, 'server connection failed');
      if (retry) {
        env.onServerUnreachable(node.name);
        await env.router.waitForChange(Math.min(deadline - Date.now(), 1000));
        continue;
      }
      return attempt.refused({
        reason: 'backend-unreachable',
        code: SqlState.connectionFailure,
        message: `could not connect to ${route === 'readWrite' ? 'primary' : 'server'} ${node.name} (${node.host}:${node.port}): ${(err as Error).message}`,
      });
    }
    if (!attempt.stillWanted()) {
      server.destroy();
      return;
    }
    if (!env.router.allows(route, node.name)) {
      // Routing changed while we connected (the node was fenced, say): decide again.
      server.destroy();
      continue;
    }
    return attempt.connected(node, server, pump);
  }
}
