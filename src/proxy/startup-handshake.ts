// The client's side of a session until its StartupMessage: SSLRequest (TLS), GSSENCRequest and CancelRequest, one packet at a time.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import { GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, SqlState } from '../protocol/codes';
import { GSSENC_NOT_SUPPORTED, SSL_ACCEPTED, SSL_NOT_SUPPORTED } from '../protocol/error-response';
import { parseStartupPacket, unsupportedProtocol, type StartupPacket } from '../protocol/startup';
import { ClientReader } from './client-reader';
import { upgradeToTls } from './tls';
import type { Refusal } from '../protocol/refusal';

export type StartupMessagePacket = Extract<StartupPacket, { kind: 'startup' }>;
export type CancelRequestPacket = Extract<StartupPacket, { kind: 'cancel-request' }>;

export interface HandshakeHandler {
  /** The StartupMessage, and whatever the client sent right behind it (a pipelined query). */
  onStartup(packet: StartupMessagePacket, pipelined: Buffer): void;
  onCancel(packet: CancelRequestPacket): void;
  onRefuse(refusal: Refusal): void;
  /** The client speaks TLS from now on, over `socket`. */
  onTls(socket: Duplex): void;
}

const EMPTY = Buffer.alloc(0);

export class StartupHandshake {
  private pending: Buffer = EMPTY;
  private socket: Duplex;
  /** PostgreSQL answers one SSLRequest and one GSSENCRequest; another is read as a startup packet of protocol 1234.5679 or 1234.5680. */
  private sslAnswered = false;
  private gssAnswered = false;
  private finished = false;
  /** Set when the startup is read through the client's reader rather than 'data' events. */
  private readonly reader: ClientReader | undefined;

  constructor(
    private readonly raw: Socket,
    private readonly secureContext: SecureContext | undefined,
    private readonly handler: HandshakeHandler,
  ) {
    this.socket = raw;
    // Without TLS to offer, the socket is never upgraded, so the reader the relay uses later can
    // take the startup too: a 'data' event costs a fresh buffer and the readable-stream machinery
    // per read, a measurable share of a short connection's CPU (pgbench -C).
    this.reader = secureContext === undefined ? ClientReader.of(raw) : undefined;
    if (this.reader !== undefined) this.reader.sink = this.onReaderChunk;
    else raw.on('data', this.onData);
  }

  /**
   * Reads nothing more: the startup is complete, or refused. A refused client's socket stays open
   * a while for it to read the ErrorResponse; what it sends meanwhile is dropped, not collected
   * (a flood would grow, and recopy, the buffer).
   */
  finish(): void {
    this.finished = true;
    this.pending = EMPTY;
    if (this.reader !== undefined) {
      if (this.reader.sink === this.onReaderChunk) this.reader.sink = undefined;
    } else this.socket.removeListener('data', this.onData);
  }

  /** How many bytes of a packet not yet complete have arrived: a client leaving now left its startup packet incomplete. */
  get partialPacketLength(): number {
    return this.finished ? 0 : this.pending.length;
  }

  /** The reader's chunk is only valid during the call; what is kept (a partial packet, pipelined bytes) must be a copy. */
  private readonly onReaderChunk = (chunk: Buffer): void => this.onData(Buffer.from(chunk));

  private readonly onData = (chunk: Buffer): void => {
    if (this.finished) return;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (!this.finished && this.pending.length > 0) {
      const result = parseStartupPacket(this.pending);
      if (result.status === 'incomplete') return;
      if (result.status === 'invalid') return this.refuse(result.refusal);
      this.pending = this.pending.subarray(result.length);
      this.handle(result.packet);
    }
  };

  private handle(packet: StartupPacket): void {
    switch (packet.kind) {
      case 'ssl-request':
        if (this.sslAnswered) return this.refuse(unsupportedProtocol(SSL_REQUEST_CODE));
        return this.negotiateSsl();
      case 'gssenc-request':
        if (this.gssAnswered) return this.refuse(unsupportedProtocol(GSSENC_REQUEST_CODE));
        return this.declineGss();
      case 'cancel-request':
        this.finish();
        return this.handler.onCancel(packet);
      case 'startup': {
        const pipelined = this.pending;
        this.finish();
        return this.handler.onStartup(packet, pipelined);
      }
    }
  }

  private negotiateSsl(): void {
    this.sslAnswered = true;
    // Bytes sent after SSLRequest but before the handshake could be injected by a man in the
    // middle (CVE-2021-23214). PostgreSQL answers the request first and then refuses them (over
    // TLS when it said 'S'), and so do we.
    const injected = this.pending.length > 0;
    if (this.secureContext === undefined) {
      this.socket.write(SSL_NOT_SUPPORTED);
    } else {
      this.raw.write(SSL_ACCEPTED);
      this.raw.removeListener('data', this.onData);
      const tlsSocket = upgradeToTls(this.raw, this.secureContext);
      // Over TLS PostgreSQL takes no GSSENCRequest either.
      this.gssAnswered = true;
      this.socket = tlsSocket;
      this.handler.onTls(tlsSocket);
      tlsSocket.on('data', this.onData);
    }
    if (injected) this.refuse(unencryptedDataAfter('SSL request'));
  }

  /** pgfloat has no GSSAPI encryption: it answers as a PostgreSQL built without it. */
  private declineGss(): void {
    this.gssAnswered = true;
    const injected = this.pending.length > 0;
    this.socket.write(GSSENC_NOT_SUPPORTED);
    if (injected) this.refuse(unencryptedDataAfter('GSSAPI encryption request'));
  }

  private refuse(refusal: Refusal): void {
    this.finish();
    this.handler.onRefuse(refusal);
  }
}

function unencryptedDataAfter(request: string): Refusal {
  return {
    reason: 'protocol-violation',
    code: SqlState.protocolViolation,
    message: `received unencrypted data after ${request}`,
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  };
}
