// A client session's side of its moves (sessions.move): it leaves its node without closing the client, waits while the move runs (session-move.ts) or routing decides, then relays on through its new server, or closes.

import type { Duplex } from 'node:stream';
import { SqlState } from '../protocol/codes';
import { MessageType } from '../protocol/message-scanner';
import type { Refusal } from '../protocol/refusal';
import type { ListenerKind } from '../routing/routes';
import type { MoveWatch } from './move-watch';
import type { ServerLink } from './server-link';
import { endWithError, endWithErrorSoon, lingerThenDestroy } from './session-end';
import type { SessionLog } from './session-log';
import { awaitRoutingLeaves, MoveError, moveSession, type MoveEnvironment, type Moved, type MoveEvent, type MoveSettings } from './session-move';
import type { SessionState } from './session-state';

const EMPTY = Buffer.alloc(0);

/** What moving needs of the relay beyond the move settings (a SessionEnvironment has it all). */
export interface MoverEnvironment extends Omit<MoveEnvironment, keyof MoveSettings> {
  onMove(event: MoveEvent): void;
}

/** What a SessionMover asks of its session (ClientSession): the session keeps its own phase, client and registrations. */
export interface MovingSession {
  /** The server the session relays through; none while it moves. */
  link(): ServerLink | undefined;
  /** Whether the session still waits on its move: false once it closed (the client left). */
  moving(): boolean;
  /** Stops relaying and leaves its node, the client paused: the session is on no node, moving. */
  leaveNode(): void;
  /** The session relays through the new server from here; its client stays paused. */
  relayOn(moved: Moved): ServerLink;
  /** The client, paused since the session left its node, is read again. */
  resumeClient(): void;
  /** Joins its new node's sessions: may drain the session at once. */
  attach(node: string): void;
  /** Closes the session; `endClient` then ends its client socket. */
  close(endClient: (client: Duplex) => void): void;
}

export class SessionMover {
  constructor(
    /** What the session remembered from its startup to be moved. */
    readonly watch: MoveWatch,
    private readonly session: MovingSession,
    private readonly route: ListenerKind,
    private readonly user: string,
    private readonly env: MoverEnvironment,
    private readonly settings: MoveSettings,
    private readonly log: SessionLog,
  ) {}

  /** Whether the session, leaving `node` for `refusal`, moves rather than closes. */
  mayMove(refusal: Refusal, node: string | undefined): boolean {
    return this.watch.mayMove(refusal, node);
  }

  /**
   * Leaves the node at a transaction boundary without closing the client: it waits, paused,
   * while the session is opened again on its route's new server (see session-move.ts). What it
   * sent meanwhile (`unforwarded`, a query it waits on) goes to the new server.
   */
  move(refusal: Refusal, unforwarded: Buffer | undefined): void {
    const link = this.session.link()!;
    const from = link.node.name;
    const known = this.watch.leaving(from, link.clientPump);
    this.session.leaveNode();
    this.moveAway(refusal, from, link, known, unforwarded === undefined ? EMPTY : Buffer.from(unforwarded));
  }

  private moveAway(refusal: Refusal, from: string, left: ServerLink, known: SessionState | undefined, unforwarded: Buffer): void {
    this.log.info({ node: from, reason: refusal.reason, stateKnown: known !== undefined }, 'moving session');
    this.env.onMove('started');
    const watch = this.watch;
    const route = this.route;
    moveSession(
      { ...this.env, ...this.settings },
      { server: left.server, pump: left.serverPump, known },
      (state) => watch.identity(route, state),
      () => this.session.moving(),
      this.log,
    ).then(
      (moved) => this.resumeOn(moved, from, unforwarded),
      (err: Error) => this.notMoved(refusal, err, unforwarded),
    );
  }

  /** The session relays through its new server from here, as if it had always been there. */
  private resumeOn(moved: Moved, from: string, unforwarded: Buffer): void {
    if (!this.session.moving()) {
      moved.server.destroy();
      return this.env.onMove('client-left');
    }
    const link = this.session.relayOn(moved);
    this.watch.moved(moved.state);
    this.watchServerEnd(link);
    if (unforwarded.length > 0) link.forward(unforwarded);
    this.session.resumeClient();
    this.env.onMove('moved');
    this.log.info({ from, node: moved.node.name, user: this.user }, 'session moved');
    // Last: a drain of the new node in progress takes the session from inside attach().
    this.session.attach(moved.node.name);
  }

  /**
   * While pgfloat knows the session's state without asking (the client has sent nothing since),
   * a server that ends it unasked (an ErrorResponse at idle: it crashed, or was stopped) need not
   * end it for the client: if routing then leaves the node (a failover), the session moves. The
   * watch ends at the first server chunk after the client sends anything.
   */
  watchServerEnd(link: ServerLink): void {
    link.serverPump.observeWith((chunk) => {
      const current = this.session.link();
      if (current === undefined || !this.watch.stateKnown(current.clientPump)) return false;
      if (chunk[0] !== MessageType.errorResponse || !current.tracker.idle()) return true;
      this.holdServerEnd(Buffer.from(chunk));
      return false;
    });
  }

  /** Whether the session may outlive its server closing the connection now (see watchServerEnd). */
  outlivesServer(link: ServerLink): boolean {
    return link.tracker.idle() && this.watch.stateKnown(link.clientPump);
  }

  /**
   * Keeps the server's end (its last words, `fatal`, if it had any) from the client, paused,
   * until routing decides: it leaves the node (a failover) and the session moves, or it does not
   * within the hold time (an operator ended the backend, the server restarted in place) and the
   * client is told as the server told it.
   */
  holdServerEnd(fatal: Buffer | undefined): void {
    const link = this.session.link()!;
    const from = link.node.name;
    const known = this.watch.leaving(from, link.clientPump);
    this.session.leaveNode();
    this.log.info({ node: from }, 'server ended an idle session whose state is known: waiting for routing to decide whether it moves');
    const refusal: Refusal = { reason: 'fenced', code: SqlState.adminShutdown, message: `terminating connection: the server ${from} ended the session` };
    void awaitRoutingLeaves(this.env.router, this.route, from, this.env.holdMs).then((left) => {
      if (!this.session.moving()) return;
      if (left) return this.moveAway(refusal, from, link, known, EMPTY);
      this.log.info({ node: from }, 'routing stayed on the node: the session ends as its server said');
      this.session.close((client) => {
        client.end(fatal ?? EMPTY);
        lingerThenDestroy(client);
      });
    });
  }

  private notMoved(refusal: Refusal, err: Error, unforwarded: Buffer): void {
    const reason = !this.session.moving() ? 'client-left' : err instanceof MoveError ? err.reason : 'connect';
    this.env.onMove(reason);
    if (!this.session.moving()) return;
    this.log.warn({ reason, err: err.message }, 'session could not move: closing it');
    const waiting = unforwarded.length > 0;
    const told: Refusal = { ...refusal, detail: `pgfloat could not move the session: ${err.message}` };
    this.session.close((client) => {
      if (waiting) endWithError(client, told);
      else endWithErrorSoon(client, told);
    });
  }
}
