// Finds message boundaries in a typed-message stream without copying it, collecting only the bodies asked for.

import { FRAME_INVALID, MessageFramer, messageTypes, type MessageTypes } from './message-framer';

export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

export type MessageHandler = (type: number, body: Buffer) => void;

/**
 * Feed it the chunks as they arrive, split anywhere; it calls `onMessage` once per complete
 * message whose type is in `collect` (others are skipped by length, never copied). The relay
 * forwards the chunks itself: the scanner only watches.
 */
export class MessageScanner {
  private readonly framer = new MessageFramer();
  private readonly stopAt: MessageTypes;
  /** The collected message whose body is being filled across chunks, in a fresh buffer since relay chunks are reused. */
  private type = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  /**
   * In the chunk being pushed, where the message just handed to `onMessage` ends: for a caller
   * that reads only up to a message (a login stops at ReadyForQuery) and hands the rest on.
   */
  messageEnd = 0;

  constructor(
    collect: ReadonlySet<number>,
    private readonly onMessage: MessageHandler,
    private readonly maxCollectedBody = 64 * 1024,
  ) {
    this.stopAt = messageTypes(collect);
  }

  /** True when the bytes seen so far end exactly at a message boundary. */
  atBoundary(): boolean {
    return this.framer.atBoundary();
  }

  push(chunk: Buffer): void {
    const framer = this.framer;
    const end = chunk.length;
    framer.offset = 0;
    if (this.body !== undefined) this.fill(chunk, end);
    for (;;) {
      const type = framer.next(chunk, end, this.stopAt);
      if (type < 0) {
        if (type === FRAME_INVALID) {
          throw new FramingError(`invalid message length ${framer.invalidLength} for message type '${String.fromCharCode(framer.invalidType)}'`);
        }
        return;
      }
      if (framer.bodyLeft > this.maxCollectedBody) {
        throw new FramingError(`message '${String.fromCharCode(type)}' too long: ${framer.bodyLeft + 4} bytes`);
      }
      this.type = type;
      this.body = Buffer.allocUnsafe(framer.bodyLeft);
      this.bodyFill = 0;
      this.fill(chunk, end);
    }
  }

  /** Copies the collected body's bytes in this chunk, and hands the body over once complete; the framer walks past them itself. */
  private fill(chunk: Buffer, end: number): void {
    const body = this.body!;
    const from = this.framer.offset;
    const to = this.framer.bodyEnd(end);
    chunk.copy(body, this.bodyFill, from, to);
    this.bodyFill += to - from;
    if (this.bodyFill === body.length) {
      this.body = undefined;
      this.messageEnd = to;
      this.onMessage(this.type, body);
    }
  }
}

/** The message types pgfloat reads by name, outside the relay's own walk (transaction-tracker.ts). */
export const MessageType = {
  backendKeyData: 0x4b, // 'K'
  readyForQuery: 0x5a, // 'Z'
  errorResponse: 0x45, // 'E'
  noticeResponse: 0x4e, // 'N'
  authentication: 0x52, // 'R'
  parameterStatus: 0x53, // 'S'
  negotiateProtocolVersion: 0x76, // 'v'
  /** Frontend: PasswordMessage, SASLInitialResponse and SASLResponse alike. */
  password: 0x70, // 'p'
  terminate: 0x58, // 'X'
} as const;

/** Transaction status byte of ReadyForQuery: idle, in a transaction block, or in a failed one. */
export type TransactionStatus = 'idle' | 'in-transaction' | 'failed';

export function transactionStatus(readyForQueryBody: Buffer): TransactionStatus {
  switch (readyForQueryBody[0]) {
    case 0x54: // 'T'
      return 'in-transaction';
    case 0x45: // 'E'
      return 'failed';
    default:
      return 'idle';
  }
}

/** Reads the 'M' field of an ErrorResponse body, for logs. */
export function errorMessageOf(errorBody: Buffer): { code?: string; message?: string } {
  const out: { code?: string; message?: string } = {};
  let offset = 0;
  while (offset < errorBody.length && errorBody[offset] !== 0) {
    const field = errorBody[offset]!;
    const end = errorBody.indexOf(0, offset + 1);
    if (end === -1) break;
    const value = errorBody.toString('utf8', offset + 1, end);
    if (field === 0x43) out.code = value;
    else if (field === 0x4d) out.message = value;
    offset = end + 1;
  }
  return out;
}
