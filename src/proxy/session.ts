// One client connection: the startup handshake, routing, the server connection, then the relay.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { NodeAddress } from '../cluster/node';
import { SqlState } from '../protocol/codes';
import { parameterStatus } from '../protocol/error-response';
import { errorMessageOf, FramingError, MessageScanner, MessageType } from '../protocol/message-scanner';
import type { Refusal } from '../protocol/refusal';
import { TransactionTracker } from '../protocol/transaction-tracker';
import type { ListenerKind } from '../routing/routes';
import { MoveWatch } from './move-watch';
import { BoundaryWatch, type ServerToClientPump } from './relay';
import { connectOnRoute, type RouteAttempt } from './server-connection';
import { ServerLink, type ServerSocketEvents } from './server-link';
import { endWithError, endWithErrorSoon, lingerThenDestroy, terminateServer } from './session-end';
import type { SessionEnvironment } from './session-environment';
import { SessionLog } from './session-log';
import { SessionMover, type MovingSession } from './session-mover';
import type { TrackedSession } from './session-registry';
import { StartupHandshake, type HandshakeHandler, type StartupMessagePacket } from './startup-handshake';

type Phase = 'startup' | 'connecting' | 'authenticating' | 'relaying' | 'moving' | 'closed';

const STARTUP_MESSAGES = new Set([MessageType.backendKeyData, MessageType.readyForQuery, MessageType.errorResponse]);
const MOVABLE_STARTUP_MESSAGES = new Set([...STARTUP_MESSAGES, ...MoveWatch.startupTypes]);
const EMPTY = Buffer.alloc(0);
let nextSessionId = 1;

export class ClientSession implements TrackedSession {
  readonly id = nextSessionId++;
  route: ListenerKind | undefined;
  user: string | undefined;
  database: string | undefined;
  applicationName: string | undefined;

  private phase: Phase = 'startup';
  private client: Duplex;
  /** The server the session relays through, from its startup on; none while it is routed or moves. */
  private link: ServerLink | undefined;
  /** Client bytes for the server to come: what the client pipelined behind its startup packet. */
  private pending: Buffer = EMPTY;
  private readonly handshake: StartupHandshake;
  private cancelKey: string | undefined;
  private startupTimer: NodeJS.Timeout | undefined;
  /** Abandons the server connection while it is still being made, so a client leaving can. */
  private connecting: (() => void) | undefined;
  /** Set by drain(): the session moves or closes at its next transaction boundary. */
  private draining = false;
  /** The startup packet while the session may still be routed again: the server has not answered it, the client sent nothing more. */
  private unansweredStartup: Buffer | undefined;
  /** Until when a read-write client may wait for a primary that can take it (failover.holdMs). */
  private holdDeadline: number | undefined;
  /** sessions.move: what the session must remember to be moved, and its moves. */
  private mover: SessionMover | undefined;
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

  /** The node the session's server is on; none before routing, nor while it moves. */
  get node(): string | undefined {
    return this.link?.node.name;
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
    const tracker = this.link!.tracker;
    if (leavingNode && tracker.idle() && this.mover?.mayMove(refusal, this.node) === true) return this.mover.move(refusal, undefined);
    this.log.info({ node: this.node, reason: refusal.reason }, 'terminating session');
    if (tracker.atServerBoundary()) {
      // The server is cut without a Terminate, so whatever transaction it has open is rolled back.
      this.closeWithError(refusal, false);
    } else {
      // Mid-message an ErrorResponse would corrupt what the client is reading, so the connection
      // is cut (the client sees an unexpected EOF, as on a server crash).
      this.close(refusal.message);
    }
  }

  /**
   * At its next transaction boundary (at once if it is at one) the session moves, if it may
   * (SessionMover), or closes: the client gets a FATAL ErrorResponse for `refusal`, the server a
   * Terminate. A session still starting up is refused or cut as terminate() does.
   */
  drain(refusal: Refusal): void {
    if (this.phase === 'closed' || this.draining) return;
    if (this.phase !== 'relaying') return this.terminate(refusal, true);
    this.draining = true;
    const link = this.link!;
    const tracker = link.tracker;
    if (tracker.idle()) return this.leaveAtBoundary(refusal, undefined);
    this.log.debug({ node: this.node, status: tracker.lastStatus(), lost: tracker.isLost() }, 'session busy: closing it at the next transaction boundary');
    link.watchForBoundary(
      new BoundaryWatch(tracker, (unforwarded) => {
        if (this.phase === 'relaying') this.leaveAtBoundary(refusal, unforwarded);
      }),
    );
  }

  /** At a transaction boundary of a drained session: it moves if it may, or closes. */
  private leaveAtBoundary(refusal: Refusal, unforwarded: Buffer | undefined): void {
    if (this.mover?.mayMove(refusal, this.node) === true) this.mover.move(refusal, unforwarded);
    else this.closeWithError(refusal, true, unforwarded !== undefined);
  }

  /** How a move (SessionMover) takes the session off its node and puts it on the new one. */
  private readonly movingSession: MovingSession = {
    link: () => this.link,
    moving: () => this.phase === 'moving',
    leaveNode: () => {
      // The server is kept only for what the move asks of it (the session's state, a Terminate).
      this.link!.detach();
      this.client.pause();
      this.env.sessions.leftAtBoundary(this);
      this.phase = 'moving';
      this.link = undefined;
    },
    relayOn: (moved) => {
      const { node, backend } = moved;
      this.phase = 'relaying';
      this.draining = false;
      // The client keeps the cancel key it was given: it now cancels on the new backend.
      if (this.cancelKey !== undefined) {
        this.env.cancels.retarget(this.cancelKey, { node: node.name, host: node.host, port: node.port, tls: node.tls, processId: backend.processId, secretKey: backend.secretKey });
      }
      if (moved.reports.length > 0) this.client.write(Buffer.concat(moved.reports.map(([name, value]) => parameterStatus(name, value))));
      return (this.link = this.linkTo(node, moved.server, moved.pump, TransactionTracker.afterStartup()));
    },
    resumeClient: () => this.client.resume(),
    attach: (node) => this.env.sessions.attach(this, node),
    close: (endClient) => this.closeWith(endClient),
  };

  /** Every link of the session reports its server socket here, until it is detached. */
  private readonly serverEvents: ServerSocketEvents = {
    onError: (err) => this.lostBeforeAnswer() || this.fail(`server socket error: ${err.message}`),
    onClose: () => this.serverClosed(),
  };

  private linkTo(node: NodeAddress, server: Socket, pump: ServerToClientPump, tracker: TransactionTracker, observe?: (chunk: Buffer) => boolean): ServerLink {
    const { counters, busyPoller } = this.env;
    return new ServerLink(node, server, pump, { client: this.client, tracker, counters, busyPoller, events: this.serverEvents, observe });
  }

  /** The server closed the connection: an idle session whose state is known may outlive it (see SessionMover.watchServerEnd). */
  private serverClosed(): void {
    if (this.lostBeforeAnswer()) return;
    if (this.phase === 'relaying' && this.mover?.outlivesServer(this.link!) === true) return this.mover.holdServerEnd(undefined);
    this.closeAfterFlush('server closed');
  }

  /**
   * A client whose startup packet the server has not answered has seen nothing of that server,
   * so when routing no longer sends it there (writes held for a switchover, the node fenced) it
   * is routed again, and waits like any new client, instead of failing a connection that a
   * moment earlier would have been held. Returns false when that is no longer possible.
   */
  private rerouteUnanswered(refusal: Refusal): boolean {
    const startup = this.unansweredStartup;
    if (this.phase !== 'authenticating' || startup === undefined || this.link!.clientPump.forwardedAny) return false;
    if (this.env.router.allows(this.route!, this.node!)) return false;
    this.log.debug({ node: this.node, reason: refusal.reason }, 'server had not answered the startup yet: routing the session again');
    this.routeAgain(startup, undefined);
    return true;
  }

  /** A primary gone before it answered the startup (shutting down, say) was never seen by the client: it waits for routing, as after a refused connection. */
  private lostBeforeAnswer(): boolean {
    const startup = this.unansweredStartup;
    if (this.phase !== 'authenticating' || startup === undefined || this.link!.clientPump.forwardedAny) return false;
    if (this.route !== 'readWrite' || Date.now() >= (this.holdDeadline ?? 0)) return false;
    this.routeAgain(startup, this.node);
    return true;
  }

  /** Leaves the server the session is starting up on, unseen by the client, and routes it again. */
  private routeAgain(startup: Buffer, failedNode: string | undefined): void {
    const link = this.link!;
    link.detach();
    link.server.destroy();
    this.env.sessions.detach(this);
    this.link = this.unansweredStartup = undefined;
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
    const link = this.link!;
    link.stop();
    const client = this.client;
    this.shutdown(false); // destroyed there, the server would never get its Terminate
    if (graceful) terminateServer(link.server);
    else link.server.destroy();
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
    const user = (this.user = params.get('user')!);
    // As PostgreSQL: no database, or an empty one, means the user's.
    this.database = params.get('database') || user;
    this.applicationName = params.get('application_name') ?? '';
    const route = (this.route = this.env.rules.resolve(this.listener, {
      user,
      database: this.database,
      applicationName: this.applicationName,
    }));
    if (this.env.move !== undefined) {
      this.mover = new SessionMover(new MoveWatch(packet.raw, user), this.movingSession, route, user, this.env, this.env.move, this.log);
    }
    if (this.refusal !== undefined) return this.refuse(this.refusal);
    return this.connectToRoute(packet.raw);
  }

  /** Decides a node for the session's route, connects to it and starts the relay with `startup`. */
  private connectToRoute(startup: Buffer, failedNode?: string): Promise<void> {
    clearTimeout(this.startupTimer);
    // The hold is once for the whole startup, however often the session is routed again.
    const deadline = (this.holdDeadline ??= Date.now() + this.env.holdMs);
    const attempt: RouteAttempt = {
      stillWanted: () => this.phase === 'connecting',
      connecting: (abandon) => (this.connecting = abandon),
      refused: (refusal) => this.refuse(refusal),
      connected: (node, server, pump) => {
        this.phase = 'authenticating';
        this.armStartupTimer(`timeout: session startup (connection and authentication) not complete within ${this.env.startupTimeoutMs} ms`);
        this.startRelay(node, server, pump, startup);
        // Last: a drain of this node in progress refuses the session from inside attach().
        this.env.sessions.attach(this, node.name);
      },
    };
    return connectOnRoute(this.env, this.route!, deadline, failedNode, attempt, this.log);
  }

  private startRelay(node: NodeAddress, server: Socket, pump: ServerToClientPump, startup: Buffer): void {
    const mover = this.mover;
    const scanner = new MessageScanner(mover === undefined ? STARTUP_MESSAGES : MOVABLE_STARTUP_MESSAGES, (type, body) => this.onServerStartupMessage(node, type, body));
    // The tracker walks both streams from the start, owing the startup's ReadyForQuery, so a
    // query pipelined with the startup is counted like any other.
    // Until the first ReadyForQuery the server's messages are also watched for BackendKeyData.
    const link = (this.link = this.linkTo(node, server, pump, new TransactionTracker(), (chunk) => {
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
      if (mover === undefined) return false; // established: nothing more to watch on the hot path
      mover.watchServerEnd(link); // replaces this observer
      return true;
    }));
    mover?.watch.watchClient(link.clientPump, this.pending);
    link.tracker.client(this.pending, 0, this.pending.length);
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
    if (this.route !== 'readWrite' || this.link!.clientPump.forwardedAny || Date.now() >= (this.holdDeadline ?? 0)) return false;
    if (chunk.length < 5 || chunk[0] !== MessageType.errorResponse) return false;
    const end = 1 + chunk.readInt32BE(1);
    if (chunk.length < end || errorMessageOf(chunk.subarray(5, end)).code !== SqlState.cannotConnectNow) return false;
    this.log.debug({ node: node.name, message: errorMessageOf(chunk.subarray(5, end)).message }, 'server not ready for the session: waiting for routing to change');
    this.routeAgain(startup, node.name);
    return true;
  }

  private onServerStartupMessage(node: NodeAddress, type: number, body: Buffer): void {
    this.mover?.watch.serverMessage(type, body);
    if (type === MessageType.backendKeyData && body.length >= 8) {
      this.cancelKey = this.env.cancels.register(body.readInt32BE(0), body.subarray(4), { node: node.name, host: node.host, port: node.port, tls: node.tls });
    } else if (type === MessageType.readyForQuery && this.phase === 'authenticating') {
      this.phase = 'relaying';
      clearTimeout(this.startupTimer);
      this.mover?.watch.established(this.link!.clientPump);
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
    this.closeWith((client) => endWithError(client, refusal));
  }

  /** The server side ended: let the client read what the server said last, then close. */
  private closeAfterFlush(reason: string): void {
    if (this.phase === 'closed') return;
    this.log.debug({ node: this.node, reason }, 'session closed');
    this.closeWith((client) => {
      client.end();
      lingerThenDestroy(client);
    });
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
    this.closeWith((client) => client.destroy());
  }

  /** Closes the session, then `endClient` ends its client socket as the way of closing asks. */
  private closeWith(endClient: (client: Duplex) => void): void {
    const client = this.client;
    this.shutdown();
    endClient(client);
  }

  /** Without `destroyServer` the caller ends the server itself, after. */
  private shutdown(destroyServer = true): void {
    this.phase = 'closed';
    this.handshake.finish();
    clearTimeout(this.startupTimer);
    if (this.cancelKey !== undefined) this.env.cancels.unregister(this.cancelKey);
    this.connecting?.();
    if (destroyServer) this.link?.server.destroy();
    this.env.sessions.remove(this);
  }
}
