// The client's side of a session until its StartupMessage: SSLRequest (TLS), GSSENCRequest and CancelRequest, one packet at a time.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, SqlState } from '../protocol/codes';
import { GSSENC_NOT_SUPPORTED, SSL_ACCEPTED, SSL_NOT_SUPPORTED } from '../protocol/error-response';
import { parseStartupPacket, unsupportedProtocol, type StartupPacket } from '../protocol/startup';
import { ClientReader } from './client-reader';
import type { ClientTls } from './tls';
import type { Refusal } from '../protocol/refusal';

export type StartupMessagePacket = Extract<StartupPacket, { kind: 'startup' }>;
export type CancelRequestPacket = Extract<StartupPacket, { kind: 'cancel-request' }>;

export interface HandshakeHandler {
  /** The StartupMessage, and whatever the client sent right behind it (a pipelined query). */
  onStartup(packet: StartupMessagePacket, pipelined: Buffer): void;
  onCancel(packet: CancelRequestPacket): void;
  onRefuse(refusal: Refusal): void;
  /** The client speaks TLS from now on, over `socket` (its handshake still under way). */
  onTls(socket: Duplex): void;
  /** The handshake is done and the client admitted; `clientCn` is its certificate's subject CN, when it sent one. */
  onTlsEstablished?(clientCn: string | undefined): void;
}

/** A TLS record header's first byte (handshake, 22): a client starting TLS at once (PostgreSQL 17, sslnegotiation=direct). */
const TLS_HANDSHAKE_RECORD = 0x16;

const EMPTY = Buffer.alloc(0);

export class StartupHandshake {
  private pending: Buffer = EMPTY;
  private socket: Duplex;
  /** PostgreSQL answers one SSLRequest and one GSSENCRequest; another is read as a startup packet of protocol 1234.5679 or 1234.5680. */
  private sslAnswered = false;
  private gssAnswered = false;
  /** Whether any byte has arrived: only a connection's first byte can start direct TLS. */
  private started = false;
  /** Over TLS an SSLRequest gets 'N' (PostgreSQL 17: a direct-TLS client asking again). */
  private encrypted = false;
  private finished = false;
  /** Set when the startup is read through the client's reader rather than 'data' events. */
  private readonly reader: ClientReader | undefined;

  constructor(
    private readonly raw: Socket,
    private readonly tls: ClientTls | undefined,
    private readonly handler: HandshakeHandler,
  ) {
    this.socket = raw;
    // Without TLS to offer, the socket is never upgraded, so the reader the relay uses later can
    // take the startup too: a 'data' event costs a fresh buffer and the readable-stream machinery
    // per read, a measurable share of a short connection's CPU (pgbench -C).
    this.reader = tls === undefined ? ClientReader.of(raw) : undefined;
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
    if (!this.started) {
      this.started = true;
      // Without tls the byte reads as the start of a startup length of hundreds of megabytes: the
      // invalid-length refusal below, closed without a word as PostgreSQL closes it.
      if (chunk[0] === TLS_HANDSHAKE_RECORD && this.tls !== undefined) return this.startDirectTls(chunk, this.tls);
    }
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
    if (this.tls === undefined || this.encrypted) {
      this.socket.write(SSL_NOT_SUPPORTED);
    } else {
      this.raw.write(SSL_ACCEPTED);
      this.raw.removeListener('data', this.onData);
      // Over TLS PostgreSQL takes no GSSENCRequest either.
      this.gssAnswered = true;
      this.upgrade(this.tls, false);
    }
    if (injected) this.refuse(unencryptedDataAfter('SSL request'));
  }

  /**
   * PostgreSQL 17's direct TLS: the handshake starts without an SSLRequest. The bytes read so far
   * are the start of the ClientHello, so they go back into the socket for TLS to read first.
   */
  private startDirectTls(chunk: Buffer, tls: ClientTls): void {
    this.raw.removeListener('data', this.onData);
    this.raw.pause();
    this.raw.unshift(chunk);
    this.upgrade(tls, true);
  }

  /** The TLS socket is read only once the handshake is judged: nothing a refused client sends is taken. */
  private upgrade(tls: ClientTls, direct: boolean): void {
    const tlsSocket: TLSSocket = tls.upgrade(this.raw);
    this.encrypted = true;
    this.socket = tlsSocket;
    const failed = (err: Error): void => {
      if (!this.finished) this.refuse(tlsRefusal(`TLS handshake failed: ${err.message.split('\n')[0]!.trim()}`));
    };
    // Registered before the session's own listeners, so a failed handshake is logged with its reason.
    tlsSocket.once('error', failed);
    this.handler.onTls(tlsSocket);
    tlsSocket.once('secure', () => {
      tlsSocket.removeListener('error', failed);
      if (this.finished) return;
      const admission = tls.admit(tlsSocket, direct);
      if (!admission.ok) return this.refuse(tlsRefusal(admission.message));
      this.handler.onTlsEstablished?.(admission.clientCn);
      tlsSocket.on('data', this.onData);
    });
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

/** PostgreSQL ends a TLS negotiation it refuses at the TLS layer and logs why (COMMERROR): the client gets no ErrorResponse. */
function tlsRefusal(message: string): Refusal {
  return { reason: 'tls-refused', code: SqlState.protocolViolation, message, silent: true };
}

function unencryptedDataAfter(request: string): Refusal {
  return {
    reason: 'protocol-violation',
    code: SqlState.protocolViolation,
    message: `received unencrypted data after ${request}`,
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  };
}
