// The client's side of a session until its StartupMessage: SSLRequest (TLS), GSSENCRequest and CancelRequest, one packet at a time.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import { SqlState } from '../protocol/codes';
import { GSSENC_NOT_SUPPORTED, SSL_ACCEPTED, SSL_NOT_SUPPORTED } from '../protocol/error-response';
import { parseStartupPacket, type StartupPacket } from '../protocol/startup';
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
  private encrypted = false;
  private negotiatedGss = false;
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

  /** The reader's chunk is only valid during the call; what is kept (a partial packet, pipelined bytes) must be a copy. */
  private readonly onReaderChunk = (chunk: Buffer): void => this.onData(Buffer.from(chunk));

  private readonly onData = (chunk: Buffer): void => {
    if (this.finished) return;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (!this.finished && this.pending.length > 0) {
      const result = parseStartupPacket(this.pending);
      if (result.status === 'incomplete') return;
      if (result.status === 'invalid') {
        return this.refuse({ reason: result.code === SqlState.featureNotSupported ? 'unsupported-protocol' : 'protocol-violation', code: result.code, message: result.message });
      }
      this.pending = this.pending.subarray(result.length);
      this.handle(result.packet);
    }
  };

  private handle(packet: StartupPacket): void {
    switch (packet.kind) {
      case 'ssl-request':
        return this.negotiateSsl();
      case 'gssenc-request':
        if (this.negotiatedGss || this.encrypted) return this.refuse(protocolViolation('duplicate GSSENCRequest'));
        this.negotiatedGss = true;
        this.socket.write(GSSENC_NOT_SUPPORTED);
        return;
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
    if (this.encrypted) return this.refuse(protocolViolation('SSLRequest received on an encrypted connection'));
    if (this.pending.length > 0) {
      // Bytes sent after SSLRequest but before the handshake could be injected by a man in the
      // middle (CVE-2021-23214); PostgreSQL refuses them, and so do we.
      return this.refuse(protocolViolation('received unencrypted data after SSL request'));
    }
    if (this.secureContext === undefined) {
      this.socket.write(SSL_NOT_SUPPORTED);
      return;
    }
    this.raw.write(SSL_ACCEPTED);
    this.raw.removeListener('data', this.onData);
    const tlsSocket = upgradeToTls(this.raw, this.secureContext);
    this.encrypted = true;
    this.socket = tlsSocket;
    this.handler.onTls(tlsSocket);
    tlsSocket.on('data', this.onData);
  }

  private refuse(refusal: Refusal): void {
    this.finish();
    this.handler.onRefuse(refusal);
  }
}

export function protocolViolation(message: string): Refusal {
  return { reason: 'protocol-violation', code: SqlState.protocolViolation, message };
}
