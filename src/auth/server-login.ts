// Logs in to a server as a user from a LoginSecret: a state machine fed with the server's bytes,
// returning the bytes to send, so the caller owns the socket (and its timeouts).

import { randomBytes } from 'node:crypto';
import { inspect, type InspectOptionsStylized } from 'node:util';
import { errorMessageOf, FramingError, MessageScanner, MessageType } from '../protocol/message-scanner';
import { parseStartupPacket } from '../protocol/startup';
import {
  authRequestName,
  MalformedAuthMessage,
  parseAuthenticationRequest,
  parseBackendKeyData,
  parseParameterStatus,
  passwordMessage,
  saslInitialResponse,
  saslResponse,
  type AuthenticationRequest,
} from './auth-messages';
import type { LoginSecret } from './login-secret';
import { md5Answer } from './md5';
import { authMessage, clientProof, decodeBase64, sameBytes, SCRAM_SHA_256, scramAttributes, serverSignature } from './scram';
import { inspectSummary } from './redaction';

export interface LoggedIn {
  processId: number;
  secretKey: Buffer;
  parameters: Map<string, string>;
  /** server bytes after ReadyForQuery (normally empty) */
  rest: Buffer;
}

export class LoginError extends Error {
  /** The SQLSTATE when the server refused with an ErrorResponse; undefined when pgfloat gave up itself. */
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(message);
    this.name = 'LoginError';
    this.code = code;
  }
}

type Phase = 'created' | 'failed' | 'started' | 'md5-answered' | 'sasl-first-sent' | 'sasl-final-sent' | 'sasl-verified' | 'authenticated' | 'done';

const ALL_TYPES = new Set(Array.from({ length: 256 }, (_, type) => type));
const EMPTY = Buffer.alloc(0);
/** Like libpq: 18 random bytes, 24 base64 characters, none of them ','. */
const NONCE_BYTES = 18;
/** base64 of the gs2 header 'n,,': no channel binding, no authorization identity. */
const GS2_HEADER = 'n,,';
const GS2_HEADER_BASE64 = Buffer.from(GS2_HEADER).toString('base64');

export class ServerLogin {
  private phase: Phase = 'created';
  private readonly scanner = new MessageScanner(ALL_TYPES, (type, body) => this.onMessage(type, body));
  private readonly parameters = new Map<string, string>();
  private backendKey: { processId: number; secretKey: Buffer } | undefined;
  private outgoing: Buffer[] = [];
  private chunk: Buffer = EMPTY;
  private loggedIn: LoggedIn | undefined;
  private clientFirstBare = '';
  private clientNonce = '';
  private expectedServerSignature: Buffer | undefined;

  /** startupPacket: the client's raw StartupMessage bytes, length word included. */
  constructor(
    private readonly startupPacket: Buffer,
    private readonly secret: LoginSecret,
  ) {
    const parsed = parseStartupPacket(startupPacket);
    if (parsed.status !== 'ok' || parsed.packet.kind !== 'startup' || parsed.length !== startupPacket.length) {
      throw new LoginError('the startup packet is not one complete StartupMessage');
    }
  }

  /** Bytes to send first (the startup packet). */
  start(): Buffer {
    if (this.phase !== 'created') throw new LoginError('the login was already started');
    this.phase = 'started';
    return this.startupPacket;
  }

  /**
   * Feed each chunk read from the server; returns bytes to send (possibly empty), and once finished
   * the result. Throws LoginError on ErrorResponse, an unexpected method, a bad server signature,
   * or malformed bytes.
   */
  feed(chunk: Buffer): { send: Buffer; done?: LoggedIn } {
    if (this.phase === 'created') throw new LoginError('feed() before start()');
    if (this.phase === 'done') throw new LoginError('the login is finished: the bytes after ReadyForQuery were in `rest`');
    if (this.phase === 'failed') throw new LoginError('the login already failed');
    this.outgoing = [];
    this.chunk = chunk;
    try {
      this.scanner.push(chunk);
    } catch (err) {
      // Past ReadyForQuery the bytes are the caller's, handed over raw in `rest`, whatever they are.
      if (this.loggedIn !== undefined && err instanceof FramingError) return { send: this.takeOutgoing(), done: this.loggedIn };
      // The scanner stopped mid-chunk: nothing after this can be read in step with the server.
      this.phase = 'failed';
      if (err instanceof FramingError) throw new LoginError(`malformed bytes from the server: ${err.message}`);
      if (err instanceof MalformedAuthMessage) throw new LoginError(`malformed message from the server: ${err.message}`);
      throw err;
    } finally {
      this.chunk = EMPTY;
    }
    const send = this.takeOutgoing();
    return this.loggedIn === undefined ? { send } : { send, done: this.loggedIn };
  }

  private takeOutgoing(): Buffer {
    const send = this.outgoing.length === 0 ? EMPTY : Buffer.concat(this.outgoing);
    this.outgoing = [];
    return send;
  }

  [inspect.custom](_depth: number, options: InspectOptionsStylized, inspectFn: typeof inspect): string {
    return inspectSummary('ServerLogin', this.toJSON(), options, inspectFn);
  }

  toJSON(): Record<string, unknown> {
    return { phase: this.phase, method: this.secret.method };
  }

  private onMessage(type: number, body: Buffer): void {
    // The scanner hands over every message in the chunk; those after ReadyForQuery belong to `rest`.
    if (this.phase === 'done') return;
    switch (type) {
      case MessageType.errorResponse: {
        const { code, message } = errorMessageOf(body);
        throw new LoginError(message ?? 'the server refused the login', code);
      }
      case MessageType.noticeResponse:
      case MessageType.negotiateProtocolVersion:
        return;
      case MessageType.authentication:
        if (this.phase === 'authenticated') throw new LoginError('an authentication request after AuthenticationOk');
        return this.onRequest(parseAuthenticationRequest(body));
    }
    if (this.phase !== 'authenticated') throw new LoginError(`message '${String.fromCharCode(type)}' before AuthenticationOk`);
    switch (type) {
      case MessageType.parameterStatus: {
        const [name, value] = parseParameterStatus(body);
        this.parameters.set(name, value);
        return;
      }
      case MessageType.backendKeyData:
        this.backendKey = parseBackendKeyData(body);
        return;
      case MessageType.readyForQuery:
        return this.finish();
      default:
        throw new LoginError(`message '${String.fromCharCode(type)}' before ReadyForQuery`);
    }
  }

  private onRequest(request: AuthenticationRequest): void {
    switch (request.kind) {
      case 'ok':
        return this.onOk();
      case 'md5':
        return this.answerMd5(request.salt);
      case 'sasl':
        return this.startScram(request.mechanisms);
      case 'sasl-continue':
        return this.answerServerFirst(request.data.toString('utf8'));
      case 'sasl-final':
        return this.checkServerFinal(request.data.toString('utf8'));
      case 'other':
        throw new LoginError(`the server asks for ${authRequestName(request.code)}, which a ${this.secret.method} secret cannot answer`);
    }
  }

  /**
   * A server that lets the user in without asking (trust) is taken at its word whatever the secret,
   * but not in the middle of SCRAM: skipping the server's signature would let a server that does
   * not hold the verifier pass for one that does.
   */
  private onOk(): void {
    if (this.phase !== 'started' && this.phase !== 'md5-answered' && this.phase !== 'sasl-verified') {
      throw new LoginError(`AuthenticationOk before the ${this.secret.method} exchange finished`);
    }
    this.phase = 'authenticated';
  }

  private answerMd5(salt: Buffer): void {
    const secret = this.secret;
    if (secret.method !== 'md5') throw this.wrongMethod('md5');
    if (this.phase !== 'started') throw new LoginError('a second md5 request');
    this.outgoing.push(passwordMessage(md5Answer(secret.storedHash, salt)));
    this.phase = 'md5-answered';
  }

  private startScram(mechanisms: readonly string[]): void {
    if (this.secret.method !== 'scram-sha-256') throw this.wrongMethod('SASL');
    if (this.phase !== 'started') throw new LoginError('a second SASL request');
    if (!mechanisms.includes(SCRAM_SHA_256)) throw new LoginError(`the server offers SASL mechanisms ${mechanisms.join(', ')} but not ${SCRAM_SHA_256}`);
    this.clientNonce = randomBytes(NONCE_BYTES).toString('base64');
    // PostgreSQL takes the user from the startup packet and ignores this one, as libpq leaves it empty.
    this.clientFirstBare = `n=,r=${this.clientNonce}`;
    this.outgoing.push(saslInitialResponse(SCRAM_SHA_256, Buffer.from(GS2_HEADER + this.clientFirstBare)));
    this.phase = 'sasl-first-sent';
  }

  private answerServerFirst(serverFirst: string): void {
    const secret = this.secret;
    if (secret.method !== 'scram-sha-256' || this.phase !== 'sasl-first-sent') throw new LoginError('an unexpected SASL continue');
    const attributes = scramAttributes(serverFirst);
    const nonce = attributes?.get('r');
    if (nonce === undefined || !attributes!.has('s') || !attributes!.has('i')) throw new LoginError('malformed SCRAM server-first message');
    // The server's nonce extends ours; one that does not is answering another exchange.
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) throw new LoginError('the SCRAM server nonce does not extend the client nonce');
    const withoutProof = `c=${GS2_HEADER_BASE64},r=${nonce}`;
    const message = authMessage(this.clientFirstBare, serverFirst, withoutProof);
    const proof = clientProof(secret.clientKey, message);
    this.expectedServerSignature = serverSignature(secret.serverKey, message);
    this.outgoing.push(saslResponse(Buffer.from(`${withoutProof},p=${proof.toString('base64')}`)));
    this.phase = 'sasl-final-sent';
  }

  /** The server proves it holds the verifier too: without this check any server could accept the login. */
  private checkServerFinal(serverFinal: string): void {
    if (this.phase !== 'sasl-final-sent' || this.expectedServerSignature === undefined) throw new LoginError('an unexpected SASL final');
    const attributes = scramAttributes(serverFinal);
    const error = attributes?.get('e');
    if (error !== undefined) throw new LoginError(`the server ended the SCRAM exchange: ${error}`);
    const signature = decodeBase64(attributes?.get('v') ?? '');
    if (signature === undefined || signature.length === 0) throw new LoginError('malformed SCRAM server-final message');
    if (!sameBytes(signature, this.expectedServerSignature)) {
      throw new LoginError("the server's SCRAM signature does not match: it does not hold this role's verifier");
    }
    this.phase = 'sasl-verified';
  }

  private finish(): void {
    if (this.backendKey === undefined) throw new LoginError('ReadyForQuery without BackendKeyData');
    this.phase = 'done';
    this.loggedIn = {
      ...this.backendKey,
      parameters: this.parameters,
      rest: Buffer.from(this.chunk.subarray(this.scanner.messageEnd)),
    };
  }

  private wrongMethod(asked: string): LoginError {
    return new LoginError(`the server asks for ${asked} but the secret is for ${this.secret.method}`);
  }
}
