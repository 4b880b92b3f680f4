// What a session must remember from its startup to be moved later (sessions.move): its StartupMessage, how it authenticated, and the state it had when it last sent nothing.

import { AuthCapture } from '../auth/auth-capture';
import { MalformedAuthMessage, parseParameterStatus } from '../auth/auth-messages';
import { MessageScanner, MessageType } from '../protocol/message-scanner';
import type { Refusal } from '../protocol/refusal';
import type { ListenerKind } from '../routing/routes';
import type { ClientToServerPump } from './relay';
import type { SessionIdentity } from './session-move';
import type { SessionState } from './session-state';

const PASSWORD_MESSAGES = new Set([MessageType.password]);

export class MoveWatch {
  private auth = new AuthCapture();
  private reported: Record<string, string> = {};
  /** The server's state as pgfloat knows it without asking it, valid while the client has sent nothing since. */
  private knownState: SessionState | undefined;
  /** The node the session last moved away from: landing there again while it is drained closes it instead. */
  private movedFrom: string | undefined;
  /** The client sent more than its startup before the server answered it (a pipelined query). */
  private pipelined = false;

  constructor(
    /** The client's StartupMessage as it sent it: the new server gets the same parameters. */
    private readonly startup: Buffer,
    private readonly user: string,
  ) {}

  /** The relay starts on a server: the authentication is watched from its first client byte (`pipelined`, sent with the startup). */
  watchClient(pump: ClientToServerPump, pipelined: Buffer): void {
    const auth = (this.auth = new AuthCapture());
    this.reported = {};
    this.knownState = undefined;
    this.pipelined = pipelined.length > 0;
    const scanner = new MessageScanner(PASSWORD_MESSAGES, (type, body) => auth.client(type, body));
    pump.observe = (chunk) => {
      try {
        scanner.push(chunk);
      } catch {
        pump.observe = undefined; // not a protocol the server takes either: the login fails anyway
      }
    };
    if (pipelined.length > 0) pump.observe(pipelined);
  }

  /** A server message of the startup phase (the session passes Authentication and ParameterStatus on). */
  serverMessage(type: number, body: Buffer): void {
    if (type === MessageType.authentication) this.auth.server(type, body);
    else if (type === MessageType.parameterStatus) this.record(body);
  }

  static readonly startupTypes: readonly number[] = [MessageType.authentication, MessageType.parameterStatus];

  private record(parameterStatus: Buffer): void {
    try {
      const [name, value] = parseParameterStatus(parameterStatus);
      this.reported[name] = value;
    } catch (err) {
      // The client reads it as it is; what pgfloat cannot read it does not report again after a move.
      if (!(err instanceof MalformedAuthMessage)) throw err;
    }
  }

  /**
   * The startup's ReadyForQuery: the client's side of it has been watched to its end. A session
   * that sent nothing but its startup has the state the startup gave it, and keeps it while the
   * pump forwards nothing more.
   */
  established(pump: ClientToServerPump): void {
    pump.observe = undefined;
    pump.forwardedAny = false;
    if (this.pipelined) return;
    this.knownState = { settings: [], role: 'none', sessionAuthorization: this.user, statements: [], reported: this.reported, unmovable: [] };
  }

  /**
   * Only sessions leaving a node that is switched over or fenced move (not pgfloat stopping, nor
   * an instance without its etcd lease, which may no longer route writes at all), and only ones
   * whose authentication was watched to its end.
   */
  mayMove(refusal: Refusal, node: string | undefined): boolean {
    if (!this.auth.done || this.movedFrom === node) return false;
    return refusal.reason === 'switchover' || refusal.reason === 'fenced';
  }

  /** Whether pgfloat knows the session's state without asking its server: nothing sent since it was last known. */
  stateKnown(pump: ClientToServerPump): boolean {
    return this.knownState !== undefined && !pump.forwardedAny;
  }

  /** The session leaves `node`: its state if known without asking the server (its pump forwarded nothing since). */
  leaving(node: string, pump: ClientToServerPump): SessionState | undefined {
    this.movedFrom = node;
    return pump.forwardedAny ? undefined : this.knownState;
  }

  identity(route: ListenerKind, state: SessionState): SessionIdentity {
    return { route, user: this.user, startup: this.startup, auth: this.auth.result(), state };
  }

  /** The session now lives on a new server, in the state found there after the restore. */
  moved(state: SessionState): void {
    this.knownState = state;
  }
}
