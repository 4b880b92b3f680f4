// Watches one session's authentication as it is relayed, keeping what a later login without the
// password needs: which method the server chose and, for SCRAM, the exchange the client's proof signs.

import { inspect, type InspectOptionsStylized } from 'node:util';
import { MessageType } from '../protocol/message-scanner';
import {
  authRequestName,
  MalformedAuthMessage,
  parseAuthenticationRequest,
  parsePasswordMessage,
  parseSaslInitialResponse,
} from './auth-messages';
import { MD5_STORED_HASH } from './md5';
import { decodeBase64, SCRAM_SHA_256, SCRAM_SHA_256_PLUS } from './scram';
import { inspectSummary, redactingRecord } from './redaction';

export type CapturedAuth =
  | { method: 'trust' } // AuthenticationOk with no request before it
  | {
      method: 'md5';
      /** The salt and the client's answer, so the stored hash can be checked against them (absent in hand-built values). */
      challenge?: { salt: Buffer; response: string };
    }
  | { method: 'scram-sha-256'; clientFirstBare: string; serverFirst: string; clientFinalWithoutProof: string; clientProof: Buffer }
  | { method: 'unmovable'; why: string }; // cleartext, gss, sspi, SCRAM-SHA-256-PLUS, anything unexpected

/**
 * Channel binding is refused on purpose. The math would allow it: the binding data is in the
 * client-final message pgfloat sees, so the ClientKey still comes out of the proof, and with it
 * pgfloat could sign any other binding. But a client asks for channel binding so that its login
 * counts only on the TLS channel it checked (tls-server-end-point: the certificate of the endpoint
 * it talked to); signing a new binding for another connection is exactly the reuse it forbade.
 */
const CHANNEL_BINDING_WHY =
  'the client uses SCRAM channel binding: its login is bound to its own TLS channel, and logging in again on another connection is the reuse it asked to prevent';

// The md5 answer replays to the same salt, and the SCRAM proof with the verifier gives the ClientKey.
const capturedMd5 = redactingRecord<Extract<CapturedAuth, { method: 'md5' }>>(['challenge']);
const capturedScram = redactingRecord<Extract<CapturedAuth, { method: 'scram-sha-256' }>>(['clientProof']);

type Phase =
  | 'start'
  | 'md5-requested'
  | 'md5-answered'
  | 'sasl-offered'
  | 'sasl-first-sent'
  | 'sasl-continued'
  | 'sasl-final-sent'
  | 'sasl-finished'
  | 'unmovable'
  | 'failed'
  | 'done';

export class AuthCapture {
  private phase: Phase = 'start';
  private captured: CapturedAuth | undefined;
  private why = '';
  private md5Salt: Buffer | undefined;
  private md5Response: string | undefined;
  private clientFirstBare = '';
  private serverFirst = '';
  private clientFinalWithoutProof = '';
  private clientProof: Buffer | undefined;

  get done(): boolean {
    return this.phase === 'done';
  }

  /** Each whole client message sent during authentication (type byte, body without the length word). */
  client(type: number, body: Buffer): void {
    // Only 'p' messages answer the server; a query pipelined ahead of AuthenticationOk says nothing about the login.
    if (type !== MessageType.password || this.phase === 'unmovable' || this.phase === 'failed' || this.phase === 'done') return;
    try {
      switch (this.phase) {
        case 'md5-requested':
          return this.onMd5Answer(parsePasswordMessage(body));
        case 'sasl-offered':
          return this.onSaslInitialResponse(body);
        case 'sasl-continued':
          return this.onClientFinal(body.toString('utf8'));
        default:
          return this.giveUp(`the client sent a password message while the login was at ${this.phase}`);
      }
    } catch (err) {
      if (!(err instanceof MalformedAuthMessage)) throw err;
      this.giveUp(`malformed client message: ${err.message}`);
    }
  }

  /** Each whole server message until AuthenticationOk (type byte, body without the length word). */
  server(type: number, body: Buffer): void {
    if (this.phase === 'done' || this.phase === 'failed') return;
    if (type === MessageType.errorResponse) {
      this.phase = 'failed';
      this.why = 'the server refused the login';
      return;
    }
    // NoticeResponse and NegotiateProtocolVersion may come before or between requests and change nothing.
    if (type !== MessageType.authentication) return;
    try {
      this.onRequest(body);
    } catch (err) {
      if (!(err instanceof MalformedAuthMessage)) throw err;
      this.giveUp(`malformed authentication request: ${err.message}`);
    }
  }

  /** What was captured; meaningful once AuthenticationOk was seen (`done` true). */
  result(): CapturedAuth {
    if (this.captured !== undefined) return this.captured;
    if (this.phase === 'failed' || this.phase === 'unmovable') return { method: 'unmovable', why: this.why };
    return { method: 'unmovable', why: 'the login has not finished' };
  }

  [inspect.custom](_depth: number, options: InspectOptionsStylized, inspectFn: typeof inspect): string {
    return inspectSummary('AuthCapture', this.toJSON(), options, inspectFn);
  }

  toJSON(): Record<string, unknown> {
    return { phase: this.phase, ...(this.captured && { method: this.captured.method }), ...(this.why && { why: this.why }) };
  }

  private onRequest(body: Buffer): void {
    const request = parseAuthenticationRequest(body);
    if (request.kind === 'ok') return this.onOk();
    if (this.phase === 'unmovable') return;
    switch (request.kind) {
      case 'md5':
        if (this.phase !== 'start') return this.unexpected('an md5 request');
        this.md5Salt = request.salt;
        this.phase = 'md5-requested';
        return;
      case 'sasl':
        if (this.phase !== 'start') return this.unexpected('a SASL request');
        this.phase = 'sasl-offered';
        return;
      case 'sasl-continue':
        if (this.phase !== 'sasl-first-sent') return this.unexpected('SASL continue');
        this.serverFirst = request.data.toString('utf8');
        this.phase = 'sasl-continued';
        return;
      case 'sasl-final':
        if (this.phase !== 'sasl-final-sent') return this.unexpected('SASL final');
        this.phase = 'sasl-finished';
        return;
      case 'other':
        return this.giveUp(`the server asked for ${authRequestName(request.code)}, which only the client can answer`);
    }
  }

  private onOk(): void {
    switch (this.phase) {
      case 'start':
        this.captured = { method: 'trust' };
        break;
      case 'md5-answered':
        this.captured = capturedMd5({ method: 'md5', challenge: { salt: this.md5Salt!, response: this.md5Response! } });
        break;
      case 'sasl-finished':
        this.captured = capturedScram({
          method: 'scram-sha-256',
          clientFirstBare: this.clientFirstBare,
          serverFirst: this.serverFirst,
          clientFinalWithoutProof: this.clientFinalWithoutProof,
          clientProof: this.clientProof!,
        });
        break;
      case 'unmovable':
        this.captured = { method: 'unmovable', why: this.why };
        break;
      default:
        this.captured = { method: 'unmovable', why: `AuthenticationOk came in the middle of the login (at ${this.phase})` };
    }
    this.phase = 'done';
  }

  private onMd5Answer(text: string): void {
    if (!MD5_STORED_HASH.test(text)) return this.giveUp('the md5 answer is not md5 and 32 hex digits');
    this.md5Response = text;
    this.phase = 'md5-answered';
  }

  /** The gs2 header says whether the client binds to its channel ('p=...'); the rest is client-first-message-bare. */
  private onSaslInitialResponse(body: Buffer): void {
    const { mechanism, data } = parseSaslInitialResponse(body);
    if (mechanism === SCRAM_SHA_256_PLUS) return this.giveUp(CHANNEL_BINDING_WHY);
    if (mechanism !== SCRAM_SHA_256) return this.giveUp(`the client chose SASL mechanism ${JSON.stringify(mechanism)}`);
    if (data === undefined) return this.giveUp('the client sent no SCRAM client-first message');
    const clientFirst = data.toString('utf8');
    const flagEnd = clientFirst.indexOf(',');
    const authzidEnd = flagEnd === -1 ? -1 : clientFirst.indexOf(',', flagEnd + 1);
    if (authzidEnd === -1) return this.giveUp('the SCRAM client-first message has no gs2 header');
    const flag = clientFirst.slice(0, flagEnd);
    if (flag.startsWith('p=')) return this.giveUp(CHANNEL_BINDING_WHY);
    if (flag !== 'n' && flag !== 'y') return this.giveUp(`unknown SCRAM channel-binding flag ${JSON.stringify(flag)}`);
    // PostgreSQL refuses an authorization identity; a login that names one would not be the same login.
    if (authzidEnd !== flagEnd + 1) return this.giveUp('the SCRAM client-first message names an authorization identity');
    this.clientFirstBare = clientFirst.slice(authzidEnd + 1);
    this.phase = 'sasl-first-sent';
  }

  /** RFC 5802 puts the proof last: client-final-message-without-proof is everything before ",p=". */
  private onClientFinal(clientFinal: string): void {
    const at = clientFinal.lastIndexOf(',p=');
    if (at === -1) return this.giveUp('the SCRAM client-final message has no proof');
    const proof = decodeBase64(clientFinal.slice(at + 3));
    if (proof === undefined) return this.giveUp('the SCRAM proof is not base64');
    this.clientFinalWithoutProof = clientFinal.slice(0, at);
    this.clientProof = proof;
    this.phase = 'sasl-final-sent';
  }

  private unexpected(what: string): void {
    this.giveUp(`the server sent ${what} while the login was at ${this.phase}`);
  }

  private giveUp(why: string): void {
    this.phase = 'unmovable';
    this.why = why;
  }
}
