// Finds message boundaries in a typed-message stream without copying it, collecting only the bodies asked for.

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
  private readonly header = Buffer.alloc(5);
  private headerFill = 0;
  private bodyRemaining = 0;
  private type = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;

  constructor(
    private readonly collect: ReadonlySet<number>,
    private readonly onMessage: MessageHandler,
    private readonly maxCollectedBody = 64 * 1024,
  ) {}

  /** True when the bytes seen so far end exactly at a message boundary. */
  atBoundary(): boolean {
    return this.headerFill === 0 && this.bodyRemaining === 0;
  }

  push(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    while (offset < end) {
      if (this.bodyRemaining > 0) {
        const take = Math.min(this.bodyRemaining, end - offset);
        if (this.body !== undefined) {
          chunk.copy(this.body, this.bodyFill, offset, offset + take);
          this.bodyFill += take;
        }
        this.bodyRemaining -= take;
        offset += take;
        if (this.bodyRemaining === 0) this.finishMessage();
        continue;
      }
      // Fast path: a whole header inside this chunk, which is nearly always the case.
      if (this.headerFill === 0 && end - offset >= 5) {
        this.startMessage(chunk[offset]!, chunk.readInt32BE(offset + 1));
        offset += 5;
        continue;
      }
      const take = Math.min(5 - this.headerFill, end - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + take);
      this.headerFill += take;
      offset += take;
      if (this.headerFill === 5) {
        this.headerFill = 0;
        this.startMessage(this.header[0]!, this.header.readInt32BE(1));
      }
    }
  }

  private startMessage(type: number, length: number): void {
    if (length < 4) {
      throw new FramingError(`invalid message length ${length} for message type '${String.fromCharCode(type)}'`);
    }
    this.type = type;
    this.bodyRemaining = length - 4;
    if (this.collect.has(type)) {
      if (this.bodyRemaining > this.maxCollectedBody) {
        throw new FramingError(`message '${String.fromCharCode(type)}' too long: ${length} bytes`);
      }
      this.body = Buffer.allocUnsafe(this.bodyRemaining);
      this.bodyFill = 0;
    } else {
      this.body = undefined;
    }
    if (this.bodyRemaining === 0) this.finishMessage();
  }

  private finishMessage(): void {
    if (this.body !== undefined) {
      const body = this.body;
      this.body = undefined;
      this.onMessage(this.type, body);
    }
  }
}

export const MessageType = {
  backendKeyData: 0x4b, // 'K'
  readyForQuery: 0x5a, // 'Z'
  errorResponse: 0x45, // 'E'
  authentication: 0x52, // 'R'
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
