// One client connection: the startup handshake, routing, the server connection, then the relay.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { NodeAddress } from '../cluster/node';
import type { Logger } from '../log';
import { SqlState } from '../protocol/codes';
import { errorMessageOf, FramingError, MessageScanner, MessageType } from '../protocol/message-scanner';
import { TransactionTracker } from '../protocol/transaction-tracker';
import type { ListenerKind } from '../routing/routes';
import type { Router } from '../routing/router';
import type { RoutingRules } from '../routing/rules';
import type { BusyPoller } from './busy-poll';
import type { CancelRegistry } from './cancel-registry';
import { BoundaryWatch, ClientToServerPump, ServerToClientPump, type RelayCounters } from './relay';
import { connectToServer } from './server-connection';
import { endWithError, endWithErrorSoon, lingerThenDestroy, terminateServer } from './session-end';
import type { SessionRegistry, TrackedSession } from './session-registry';
import { SessionLog } from './session-log';
import { StartupHandshake, type HandshakeHandler, type StartupMessagePacket } from './startup-handshake';
import type { Refusal } from '../protocol/refusal';
import { parameterStatus } from '../protocol/error-response';
import { MoveWatch } from './move-watch';
import { awaitRoutingLeaves, MoveError, moveSession, type Moved, type MoveEvent, type MoveSettings } from './session-move';
import type { SessionState } from './session-state';

export interface SessionEnvironment {
  router: Router;
  rules: RoutingRules;
  nodes: ReadonlyMap<string, NodeAddress>;
  cancels: CancelRegistry;
  sessions: SessionRegistry;
  counters: RelayCounters;
  secureContext: SecureContext | undefined;
  startupTimeoutMs: number;
  connectTimeoutMs: number;
  keepaliveIdleMs: number;
  /** How long a read-write client may wait for a primary (failover.holdMs). */
  holdMs: number;
  busyPoller: BusyPoller | undefined;
  log: Logger;
  onRefused(listener: ListenerKind, refusal: Refusal): void;
  /** A server refused or dropped a connection attempt: worth a heartbeat now. */
  onServerUnreachable(node: string): void;
  onEstablished(listener: ListenerKind, route: ListenerKind, node: string): void;
  /** A cancel request for a key no session here holds: with workers, another worker's session may. */
  cancelElsewhere?: ((processId: number, secretKey: Buffer) => void) | undefined;
  /** Set when sessions leaving a switched-over or fenced node move to the new one (sessions.move). */
  move: MoveSettings | undefined;
  onMove(event: MoveEvent): void;
}

type Phase = 'startup' | 'connecting' | 'authenticating' | 'relaying' | 'moving' | 'closed';

const STARTUP_MESSAGES = new Set([MessageType.backendKeyData, MessageType.readyForQuery, MessageType.errorResponse]);
const MOVABLE_STARTUP_MESSAGES = new Set([...STARTUP_MESSAGES, ...MoveWatch.startupTypes]);
const EMPTY = Buffer.alloc(0);
let nextSessionId = 1;

export class ClientSession implements TrackedSession {
  readonly id = nextSessionId++;
  node: string | undefined;
  route: ListenerKind | undefined;
  user: string | undefined;
  database: string | undefined;
  applicationName: string | undefined;

  private phase: Phase = 'startup';
  private client: Duplex;
  private server: Socket | undefined;
  private pending: Buffer = EMPTY;
  private readonly handshake: StartupHandshake;
  private cancelKey: string | undefined;
  private startupTimer: NodeJS.Timeout | undefined;
  /** The server socket while it is still connecting, so a client leaving can abort it. */
  private connecting: Socket | undefined;
  /** Set once the relay starts: where both streams are in their message framing and transactions. */
  private tracker: TransactionTracker | undefined;
  private clientPump: ClientToServerPump | undefined;
  private serverPump: ServerToClientPump | undefined;
  /** Set by drain(): the session closes at its next transaction boundary. */
  private draining = false;
  /** The startup packet while the session may still be routed again: the server has not answered it, the client sent nothing more. */
  private unansweredStartup: Buffer | undefined;
  /** Until when a read-write client may wait for a primary that can take it (failover.holdMs). */
  private holdDeadline: number | undefined;
  /** sessions.move: what the session must remember to be moved. */
  private moveWatch: MoveWatch | undefined;
  private readonly log: SessionLog;

  constructor(
    raw: Socket,
    readonly listener: ListenerKind,
    private readonly env: SessionEnvironment,
    /** Set when the session is refused whatever it asks (pgfloat full or stopping). */
    private readonly refusal?: Refusal,
  ) {
    this.client = raw;
    this.log = new SessionLog(env.log, { session: this.id, listener, remote: `${raw.remoteAddress}:${raw.remotePort}` });
    raw.setNoDelay(true);
    raw.setKeepAlive(true, env.keepaliveIdleMs);
    raw.on('error', (err) => this.fail(`client socket error: ${err.message}`));
    raw.on('close', () => this.close('client closed'));
    this.handshake = new StartupHandshake(raw, env.secureContext, this.handshakeEvents);
    // PostgreSQL's backend just exits when authentication_timeout passes before the startup packet.
    this.armStartupTimer(`timeout: no complete startup packet within ${env.startupTimeoutMs} ms`, true);
    env.sessions.add(this);
  }

  /** The client has startupTimeoutMs for each stage it controls; time spent held by a failover is not counted. */
  private armStartupTimer(message: string, silent = false): void {
    clearTimeout(this.startupTimer);
    this.startupTimer = setTimeout(() => {
      this.refuse({ reason: 'startup-timeout', code: SqlState.protocolViolation, message, ...(silent ? { silent } : {}) });
    }, this.env.startupTimeoutMs);
  }

  /**
   * Ends the session now, telling the client why when that can be said cleanly. With
   * `leavingNode` (the node is fenced or drained, not pgfloat stopping) a session whose server
   * has not answered yet is routed again instead.
   */
  terminate(refusal: Refusal, leavingNode = false): void {
    if (this.phase === 'closed') return;
    if (leavingNode && this.rerouteUnanswered(refusal)) return;
    if (this.phase !== 'relaying') return this.refuse(refusal);
    if (leavingNode && this.tracker!.idle() && this.moveWatch?.mayMove(refusal, this.node) === true) return this.move(refusal, undefined);
    this.log.info({ node: this.node, reason: refusal.reason }, 'terminating session');
    if (this.tracker!.atServerBoundary()) {
      // The server is cut without a Terminate, so whatever transaction it has open is rolled back.
      this.closeWithError(refusal, false);
    } else {
      // Mid-message an ErrorResponse would corrupt what the client is reading, so the connection
      // is cut (the client sees an unexpected EOF, as on a server crash).
      this.close(refusal.message);
    }
  }

  /**
   * Closes the session at its next transaction boundary (at once if it is at one): the client
   * gets a FATAL ErrorResponse for `refusal`, the server a Terminate. A session still starting up
   * is refused or cut as terminate() does.
   */
  drain(refusal: Refusal): void {
    if (this.phase === 'closed' || this.draining) return;
    if (this.phase !== 'relaying') return this.terminate(refusal, true);
    this.draining = true;
    const tracker = this.tracker!;
    if (tracker.idle()) return this.leaveAtBoundary(refusal, undefined);
    this.log.debug({ node: this.node, status: tracker.lastStatus(), lost: tracker.isLost() }, 'session busy: closing it at the next transaction boundary');
    const watch = new BoundaryWatch(tracker, (unforwarded) => {
      if (this.phase === 'relaying') this.leaveAtBoundary(refusal, unforwarded);
    });
    this.clientPump!.watch = watch;
    this.serverPump!.watch = watch;
  }

  /** At a transaction boundary of a drained session: it moves if it may, or closes. */
  private leaveAtBoundary(refusal: Refusal, unforwarded: Buffer | undefined): void {
    if (this.moveWatch?.mayMove(refusal, this.node) === true) this.move(refusal, unforwarded);
    else this.closeWithError(refusal, true, unforwarded !== undefined);
  }

  /**
   * Leaves the node at a transaction boundary without closing the client: it waits, paused,
   * while the session is opened again on its route's new server (see session-move.ts). What it
   * sent meanwhile (`unforwarded`, a query it waits on) goes to the new server.
   */
  private move(refusal: Refusal, unforwarded: Buffer | undefined): void {
    const from = this.node!;
    const server = this.server!;
    const pump = this.serverPump!;
    const known = this.moveWatch!.leaving(from, this.clientPump!);
    this.detachServer();
    this.pending = unforwarded === undefined ? EMPTY : Buffer.from(unforwarded);
    this.moveAway(refusal, from, server, pump, known);
  }

  /** Stops relaying, the client paused and the server kept only for what the move asks of it; the session is on no node. */
  private detachServer(): void {
    const server = this.server!;
    this.clientPump!.stop();
    this.serverPump!.stop();
    this.client.pause();
    server.removeAllListeners('close');
    server.removeAllListeners('error');
    server.on('error', () => undefined);
    this.env.sessions.leftAtBoundary(this);
    this.phase = 'moving';
    this.server = this.node = this.tracker = this.clientPump = this.serverPump = undefined;
  }

  private moveAway(refusal: Refusal, from: string, server: Socket, pump: ServerToClientPump, known: SessionState | undefined): void {
    this.log.info({ node: from, reason: refusal.reason, stateKnown: known !== undefined }, 'moving session');
    this.env.onMove('started');
    const watch = this.moveWatch!;
    const route = this.route!;
    moveSession({ ...this.env, ...this.env.move! }, { server, pump, known }, (state) => watch.identity(route, state), () => this.phase === 'moving').then(
      (moved) => this.resumeOn(moved, from),
      (err: Error) => this.notMoved(refusal, err),
    );
  }

  /** The session relays through its new server from here, as if it had always been there. */
  private resumeOn(moved: Moved, from: string): void {
    if (this.phase !== 'moving') {
      moved.server.destroy();
      return this.env.onMove('client-left');
    }
    const { node, server, pump, backend } = moved;
    this.node = node.name;
    this.server = server;
    this.phase = 'relaying';
    this.draining = false;
    server.on('error', (err) => this.fail(`server socket error: ${err.message}`));
    server.on('close', () => this.serverClosed());
    // The client keeps the cancel key it was given: it now cancels on the new backend.
    if (this.cancelKey !== undefined) {
      this.env.cancels.retarget(this.cancelKey, { node: node.name, host: node.host, port: node.port, processId: backend.processId, secretKey: backend.secretKey });
    }
    if (moved.reports.length > 0) this.client.write(Buffer.concat(moved.reports.map(([name, value]) => parameterStatus(name, value))));
    const tracker = (this.tracker = TransactionTracker.afterStartup());
    this.serverPump = pump;
    pump.start(server, this.client, tracker);
    this.clientPump = new ClientToServerPump(this.client, server, tracker, this.env.counters, this.env.busyPoller);
    this.clientPump.start();
    this.moveWatch!.moved(moved.state);
    this.watchServerEnd(pump);
    if (this.pending.length > 0) {
      tracker.client(this.pending, 0, this.pending.length);
      server.write(this.pending);
      this.clientPump.forwardedAny = true;
      this.pending = EMPTY;
    }
    this.client.resume();
    this.env.onMove('moved');
    this.log.info({ from, node: node.name, user: this.user }, 'session moved');
    // Last: a drain of the new node in progress takes the session from inside attach().
    this.env.sessions.attach(this, node.name);
  }

  /**
   * While pgfloat knows the session's state without asking (the client has sent nothing since),
   * a server that ends it unasked (an ErrorResponse at idle: it crashed, or was stopped) need not
   * end it for the client: if routing then leaves the node (a failover), the session moves. The
   * watch ends at the first server chunk after the client sends anything.
   */
  private watchServerEnd(pump: ServerToClientPump): void {
    const watch = this.moveWatch;
    if (watch === undefined) return;
    pump.observeWith((chunk) => {
      const clientPump = this.clientPump;
      if (clientPump === undefined || !watch.stateKnown(clientPump)) return false;
      if (chunk[0] !== MessageType.errorResponse || !this.tracker!.idle()) return true;
      this.holdServerEnd(Buffer.from(chunk));
      return false;
    });
  }

  /** The server closed the connection: an idle session whose state is known may outlive it (see watchServerEnd). */
  private serverClosed(): void {
    const watch = this.moveWatch;
    if (this.phase === 'relaying' && watch !== undefined && this.tracker!.idle() && watch.stateKnown(this.clientPump!)) return this.holdServerEnd(undefined);
    this.closeAfterFlush('server closed');
  }

  /**
   * Keeps the server's end (its last words, `fatal`, if it had any) from the client, paused,
   * until routing decides: it leaves the node (a failover) and the session moves, or it does not
   * within the hold time (an operator ended the backend, the server restarted in place) and the
   * client is told as the server told it.
   */
  private holdServerEnd(fatal: Buffer | undefined): void {
    const from = this.node!;
    const server = this.server!;
    const pump = this.serverPump!;
    const known = this.moveWatch!.leaving(from, this.clientPump!);
    this.detachServer();
    this.log.info({ node: from }, 'server ended an idle session whose state is known: waiting for routing to decide whether it moves');
    const refusal: Refusal = { reason: 'fenced', code: SqlState.adminShutdown, message: `terminating connection: the server ${from} ended the session` };
    void awaitRoutingLeaves(this.env.router, this.route!, from, this.env.holdMs).then((left) => {
      if (this.phase !== 'moving') return;
      if (left) return this.moveAway(refusal, from, server, pump, known);
      this.log.info({ node: from }, 'routing stayed on the node: the session ends as its server said');
      const client = this.client;
      this.shutdown();
      client.end(fatal ?? EMPTY);
      lingerThenDestroy(client);
    });
  }

  private notMoved(refusal: Refusal, err: Error): void {
    const reason = this.phase !== 'moving' ? 'client-left' : err instanceof MoveError ? err.reason : 'connect';
    this.env.onMove(reason);
    if (this.phase !== 'moving') return;
    this.log.warn({ reason, err: err.message }, 'session could not move: closing it');
    const client = this.client;
    const waiting = this.pending.length > 0;
    this.shutdown();
    const told: Refusal = { ...refusal, detail: `pgfloat could not move the session: ${err.message}` };
    if (waiting) endWithError(client, told);
    else endWithErrorSoon(client, told);
  }

  /**
   * A client whose startup packet the server has not answered has seen nothing of that server,
   * so when routing no longer sends it there (writes held for a switchover, the node fenced) it
   * is routed again, and waits like any new client, instead of failing a connection that a
   * moment earlier would have been held. Returns false when that is no longer possible.
   */
  private rerouteUnanswered(refusal: Refusal): boolean {
    const startup = this.unansweredStartup;
    if (this.phase !== 'authenticating' || startup === undefined || this.clientPump!.forwardedAny) return false;
    if (this.env.router.allows(this.route!, this.node!)) return false;
    this.log.debug({ node: this.node, reason: refusal.reason }, 'server had not answered the startup yet: routing the session again');
    this.routeAgain(startup, undefined);
    return true;
  }

  /** Leaves the server the session is starting up on, unseen by the client, and routes it again. */
  private routeAgain(startup: Buffer, failedNode: string | undefined): void {
    this.clientPump!.stop();
    this.serverPump!.stop();
    const server = this.server!;
    server.removeAllListeners('close');
    server.removeAllListeners('error');
    server.on('error', () => undefined);
    server.destroy();
    this.env.sessions.detach(this);
    this.server = this.node = this.tracker = this.clientPump = this.serverPump = this.unansweredStartup = undefined;
    this.phase = 'connecting';
    this.client.pause();
    this.connectToRoute(startup, failedNode).catch((err: Error) => this.fail(`routing failed: ${err.message}`));
  }

  /**
   * Sends the client a FATAL ErrorResponse and closes both sides; only valid at a server message
   * boundary. At a transaction boundary (`graceful`) the server gets a Terminate and ends cleanly.
   */
  private closeWithError(refusal: Refusal, graceful: boolean, clientWaiting = false): void {
    this.log.info({ node: this.node, reason: refusal.reason, graceful }, graceful ? 'closing session at a transaction boundary' : 'closing session with an ErrorResponse');
    this.clientPump!.stop();
    this.serverPump!.stop();
    const client = this.client;
    const server = this.server!;
    this.server = undefined; // shutdown() would destroy it before the Terminate is sent
    this.shutdown();
    if (graceful) terminateServer(server);
    else server.destroy();
    if (clientWaiting) endWithError(client, refusal);
    else endWithErrorSoon(client, refusal);
  }

  private readonly handshakeEvents: HandshakeHandler = {
    onStartup: (packet, pipelined) => {
      this.pending = pipelined;
      this.routeAndConnect(packet).catch((err: Error) => this.fail(`routing failed: ${err.message}`));
    },
    onCancel: (packet) => {
      const target = this.env.cancels.forward(packet.processId, packet.secretKey, this.env.connectTimeoutMs);
      const elsewhere = target === undefined ? this.env.cancelElsewhere : undefined;
      elsewhere?.(packet.processId, packet.secretKey);
      const outcome = target ? 'cancel request forwarded' : elsewhere ? 'cancel request passed to the other workers' : 'cancel request for unknown key dropped';
      this.log.debug({ pid: packet.processId, node: target?.node ?? null }, outcome);
      this.close('cancel request handled');
    },
    onRefuse: (refusal) => this.refuse(refusal),
    onTls: (socket) => {
      this.client = socket;
      socket.on('error', (err) => this.fail(`TLS error: ${err.message}`));
      socket.on('close', () => this.close('client closed'));
    },
  };

  private async routeAndConnect(packet: StartupMessagePacket): Promise<void> {
    this.phase = 'connecting';
    this.client.pause();
    const params = packet.parameters;
    this.user = params.get('user')!;
    // As PostgreSQL: no database, or an empty one, means the user's.
    this.database = params.get('database') || this.user;
    this.applicationName = params.get('application_name') ?? '';
    if (this.env.move !== undefined) this.moveWatch = new MoveWatch(packet.raw, this.user);
    this.route = this.env.rules.resolve(this.listener, {
      user: this.user,
      database: this.database,
      applicationName: this.applicationName,
    });
    if (this.refusal !== undefined) return this.refuse(this.refusal);
    return this.connectToRoute(packet.raw);
  }

  /** Decides a node for the session's route, connects to it and starts the relay with `startup`. */
  private async connectToRoute(startup: Buffer, failedNode?: string): Promise<void> {
    clearTimeout(this.startupTimer);
    const route = this.route!;
    // A primary that refuses connections is usually one that just died: read-write clients then
    // wait (up to the hold time, once for the whole startup however often it is routed again)
    // for routing to change instead of failing at once.
    const deadline = (this.holdDeadline ??= Date.now() + this.env.holdMs);
    if (failedNode !== undefined) {
      this.env.onServerUnreachable(failedNode);
      await this.env.router.waitForChange(Math.min(deadline - Date.now(), 1000));
    }
    for (;;) {
      const decision = await this.env.router.decide(route);
      if (this.phase !== 'connecting') return; // the client went away while we waited
      if (!decision.ok) return this.refuse(decision.refusal);
      const node = this.env.nodes.get(decision.node)!;
      const pump = new ServerToClientPump(this.env.counters);
      let server: Socket;
      try {
        const attempt = connectToServer(node, pump, this.env);
        this.connecting = attempt.socket;
        server = await attempt.connected.finally(() => (this.connecting = undefined));
      } catch (err) {
        if (this.phase !== 'connecting') return;
        const retry = route === 'readWrite' && Date.now() < deadline;
        this.log.debug({ node: node.name, err: (err as Error).message, retry }, 'server connection failed');
        if (retry) {
          this.env.onServerUnreachable(node.name);
          await this.env.router.waitForChange(Math.min(deadline - Date.now(), 1000));
          continue;
        }
        return this.refuse({
          reason: 'backend-unreachable',
          code: SqlState.connectionFailure,
          message: `could not connect to ${route === 'readWrite' ? 'primary' : 'server'} ${node.name} (${node.host}:${node.port}): ${(err as Error).message}`,
        });
      }
      if (this.phase !== 'connecting') {
        server.destroy();
        return;
      }
      if (!this.env.router.allows(route, node.name)) {
        // Routing changed while we connected (the node was fenced, say): decide again.
        server.destroy();
        continue;
      }
      this.node = node.name;
      this.server = server;
      this.phase = 'authenticating';
      this.armStartupTimer(`timeout: session startup (connection and authentication) not complete within ${this.env.startupTimeoutMs} ms`);
      server.on('error', (err) => this.fail(`server socket error: ${err.message}`));
      server.on('close', () => this.serverClosed());
      this.startRelay(node, startup, pump);
      // Last: a drain of this node in progress refuses the session from inside attach().
      this.env.sessions.attach(this, node.name);
      return;
    }
  }

  private startRelay(node: NodeAddress, startup: Buffer, pump: ServerToClientPump): void {
    const server = this.server!;
    const scanner = new MessageScanner(this.moveWatch === undefined ? STARTUP_MESSAGES : MOVABLE_STARTUP_MESSAGES, (type, body) => this.onServerStartupMessage(node, type, body));
    // The tracker walks both streams from the start, owing the startup's ReadyForQuery, so a
    // query pipelined with the startup is counted like any other.
    const tracker = (this.tracker = new TransactionTracker());
    this.serverPump = pump;
    // Until the first ReadyForQuery the server's messages are also watched for BackendKeyData.
    pump.start(server, this.client, tracker, (chunk) => {
      const unanswered = this.unansweredStartup;
      this.unansweredStartup = undefined;
      if (unanswered !== undefined && this.notReadyForWrites(chunk, node, unanswered)) return false;
      try {
        scanner.push(chunk);
      } catch (err) {
        if (!(err instanceof FramingError)) throw err;
        this.log.warn({ node: node.name, err: err.message }, 'unexpected bytes from server during startup; relaying as is');
        return false;
      }
      if (this.phase === 'authenticating') return true;
      this.watchServerEnd(pump);
      return true;
    });
    this.clientPump = new ClientToServerPump(this.client, server, tracker, this.env.counters, this.env.busyPoller);
    this.clientPump.start();
    this.moveWatch?.watchClient(this.clientPump, this.pending);
    tracker.client(this.pending, 0, this.pending.length);
    this.unansweredStartup = this.pending.length === 0 ? startup : undefined;
    server.write(this.pending.length > 0 ? Buffer.concat([startup, this.pending]) : startup);
    this.pending = EMPTY;
    this.client.resume();
  }

  /**
   * A primary that answers the startup with 57P03 ("the database system is shutting down", "...
   * starting up") is one about to go away or not there yet: a read-write client then waits for
   * routing to change, as for a refused connection, instead of failing. The answer is the
   * server's first chunk, not yet forwarded, so the client never sees it.
   */
  private notReadyForWrites(chunk: Buffer, node: NodeAddress, startup: Buffer): boolean {
    if (this.route !== 'readWrite' || this.clientPump!.forwardedAny || Date.now() >= (this.holdDeadline ?? 0)) return false;
    if (chunk.length < 5 || chunk[0] !== MessageType.errorResponse) return false;
    const end = 1 + chunk.readInt32BE(1);
    if (chunk.length < end || errorMessageOf(chunk.subarray(5, end)).code !== SqlState.cannotConnectNow) return false;
    this.log.debug({ node: node.name, message: errorMessageOf(chunk.subarray(5, end)).message }, 'server not ready for the session: waiting for routing to change');
    this.routeAgain(startup, node.name);
    return true;
  }

  private onServerStartupMessage(node: NodeAddress, type: number, body: Buffer): void {
    this.moveWatch?.serverMessage(type, body);
    if (type === MessageType.backendKeyData && body.length >= 8) {
      this.cancelKey = this.env.cancels.register(body.readInt32BE(0), body.subarray(4), { node: node.name, host: node.host, port: node.port });
    } else if (type === MessageType.readyForQuery && this.phase === 'authenticating') {
      this.phase = 'relaying';
      clearTimeout(this.startupTimer);
      this.moveWatch?.established(this.clientPump!);
      this.env.onEstablished(this.listener, this.route!, node.name);
      this.log.debug({ node: node.name, user: this.user, database: this.database }, 'session established');
    } else if (type === MessageType.errorResponse && this.phase === 'authenticating') {
      const { code, message } = errorMessageOf(body);
      this.log.debug({ node: node.name, user: this.user, code, message }, 'server refused session startup');
    }
  }

  /** Sends an ErrorResponse to the client (nothing if the refusal is silent) and closes; used for every refusal pgfloat makes itself. */
  private refuse(refusal: Refusal): void {
    if (this.phase === 'closed') return;
    const logFields = { reason: refusal.reason, code: refusal.code, user: this.user, database: this.database, route: this.route };
    this.log.info(logFields, `${refusal.silent === true ? 'closed client without a word' : 'refused client'}: ${refusal.message}`);
    this.env.onRefused(this.listener, refusal);
    const client = this.client;
    this.shutdown();
    endWithError(client, refusal);
  }

  /** The server side ended: let the client read what the server said last, then close. */
  private closeAfterFlush(reason: string): void {
    if (this.phase === 'closed') return;
    this.log.debug({ node: this.node, reason }, 'session closed');
    const client = this.client;
    this.shutdown();
    client.end();
    lingerThenDestroy(client);
  }

  private fail(reason: string): void {
    if (this.phase === 'closed') return;
    this.log.debug({ node: this.node, reason }, 'session failed');
    this.close(reason);
  }

  private close(reason: string): void {
    if (this.phase === 'closed') return;
    // PostgreSQL logs this one too: a client that went away in the middle of its startup packet.
    const partial = this.phase === 'startup' ? this.handshake.partialPacketLength : 0;
    if (partial > 0) this.log.info({ reason: 'protocol-violation', received: partial }, 'client closed: incomplete startup packet');
    if (reason !== 'client closed' && reason !== 'cancel request handled') this.log.debug({ node: this.node, reason }, 'session closed');
    const client = this.client;
    this.shutdown();
    client.destroy();
  }

  private shutdown(): void {
    this.phase = 'closed';
    this.handshake.finish();
    clearTimeout(this.startupTimer);
    if (this.cancelKey !== undefined) this.env.cancels.unregister(this.cancelKey);
    this.connecting?.destroy();
    this.server?.destroy();
    this.env.sessions.remove(this);
  }
}

