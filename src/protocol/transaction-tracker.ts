// Walks both directions of an established session's message framing to tell when it is idle at a transaction boundary.

/** ReadyForQuery's status byte: 'I' idle, 'T' in a transaction block, 'E' in a failed one. */
export type ReadyStatus = 'I' | 'T' | 'E';

// Message types (protocol 3). Frontend and backend letters overlap with different meanings.
const READY_FOR_QUERY = 0x5a; // 'Z' (backend)
const COPY_IN_RESPONSE = 0x47; // 'G' (backend)
const STATUS_IDLE = 0x49; // 'I'
const STATUS_IN_TRANSACTION = 0x54; // 'T'
const STATUS_FAILED = 0x45; // 'E'
const QUERY = 0x51; // 'Q'
const SYNC = 0x53; // 'S'
const FUNCTION_CALL = 0x46; // 'F'
const PARSE = 0x50; // 'P'
const BIND = 0x42; // 'B'
const EXECUTE = 0x45; // 'E'
const DESCRIBE = 0x44; // 'D'
const CLOSE = 0x43; // 'C'
const FLUSH = 0x48; // 'H'
const COPY_DONE = 0x63; // 'c'
const COPY_FAIL = 0x66; // 'f'
const TERMINATE = 0x58; // 'X'

/**
 * Feed it every byte of both streams after the StartupMessage, in the order they are relayed
 * (`client` before forwarding a client chunk, `server` before forwarding a server chunk). It
 * never copies or throws: bodies are skipped by length, headers split across chunks are kept in
 * a few integer fields, and a framing error only marks it lost (never idle again).
 *
 * The server starts owing one ReadyForQuery, the one that ends the startup; after that every
 * Query, Sync and FunctionCall the client sends is owed one more.
 */
export class TransactionTracker {
  // Server stream: header bytes still missing (0 at a boundary or inside a body), the header being
  // assembled, body bytes left to skip, and whether the next body byte is a ReadyForQuery status.
  private serverHeaderNeed = 0;
  private serverType = 0;
  private serverLength = 0;
  private serverBody = 0;
  private serverWantsStatus = false;
  // Client stream, likewise.
  private clientHeaderNeed = 0;
  private clientType = 0;
  private clientLength = 0;
  private clientBody = 0;

  /** ReadyForQuery messages the server still owes: one per sync point sent, plus the startup's. */
  private owed = 1;
  /** Parse/Bind/Execute/Describe/Close/Flush sent after the last sync point: work with no ReadyForQuery coming yet. */
  private extendedPending = false;
  private status = STATUS_IDLE;
  private lost = false;
  private terminated = false;
  // A COPY FROM STDIN started by Execute swallows the Syncs the client sent behind it (the server
  // ignores Sync and Flush in copy mode, and libpq sends another Sync after CopyDone), so those
  // are not owed a ReadyForQuery: the Syncs since the last Execute, and whether the server has
  // answered with CopyInResponse since.
  private lastWasExecute = false;
  private syncsSinceExecute = 0;
  private serverInCopyIn = false;

  /**
   * True only when both streams end at a message boundary, every sync point has had its
   * ReadyForQuery, no extended-protocol message waits for a Sync, the last ReadyForQuery said
   * idle, and the client has not sent Terminate.
   */
  idle(): boolean {
    return (
      this.owed === 0 &&
      this.status === STATUS_IDLE &&
      !this.extendedPending &&
      this.serverBody === 0 &&
      this.serverHeaderNeed === 0 &&
      this.clientBody === 0 &&
      this.clientHeaderNeed === 0 &&
      !this.lost &&
      !this.terminated
    );
  }

  /** True when the bytes relayed to the client end between two messages, so one more can be injected. */
  atServerBoundary(): boolean {
    return this.serverBody === 0 && this.serverHeaderNeed === 0 && !this.lost;
  }

  /** The status byte of the last ReadyForQuery seen. */
  lastStatus(): ReadyStatus {
    return this.status === STATUS_IN_TRANSACTION ? 'T' : this.status === STATUS_FAILED ? 'E' : 'I';
  }

  /** True after a framing error in either direction: the tracker no longer knows where messages start. */
  isLost(): boolean {
    return this.lost;
  }

  /** True once the client has sent Terminate. */
  clientTerminated(): boolean {
    return this.terminated;
  }

  /** Bytes the server sent, `chunk[start..end)`. */
  server(chunk: Uint8Array, start: number, end: number): void {
    if (this.lost) return;
    let i = start;
    for (;;) {
      // Inside a body: skip it, taking a ReadyForQuery status byte on the way.
      let body = this.serverBody;
      if (body > 0) {
        if (i >= end) return;
        if (this.serverWantsStatus) {
          this.serverWantsStatus = false;
          this.readyForQuery(chunk[i]!);
          if (this.lost) return;
        }
        const available = end - i;
        if (body >= available) {
          this.serverBody = body - available;
          return;
        }
        i += body;
        this.serverBody = body = 0;
      }
      if (i >= end) return;
      let type: number;
      let length: number;
      if (this.serverHeaderNeed === 0 && end - i >= 5) {
        // The usual case: the whole header is in this chunk.
        type = chunk[i]!;
        length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) >>> 0;
        i += 5;
      } else {
        // A header split across chunks: gather it byte by byte (at most four bytes per chunk).
        let need = this.serverHeaderNeed;
        if (need === 0) {
          this.serverType = chunk[i++]!;
          this.serverLength = 0;
          need = 4;
        }
        while (need > 0 && i < end) {
          this.serverLength = ((this.serverLength << 8) | chunk[i++]!) >>> 0;
          need--;
        }
        this.serverHeaderNeed = need;
        if (need > 0) return;
        type = this.serverType;
        length = this.serverLength;
      }
      // Lengths are signed int32 on the wire; read unsigned, anything above 2^31 is negative.
      if (length < 4 || length > 0x7fffffff) {
        this.lost = true;
        return;
      }
      this.serverBody = length - 4;
      if (type === READY_FOR_QUERY) {
        if (length === 4) {
          this.lost = true;
          return;
        }
        this.serverWantsStatus = true;
      } else if (type === COPY_IN_RESPONSE) {
        this.serverInCopyIn = true;
      }
    }
  }

  /** Bytes the client sent, `chunk[start..end)`. */
  client(chunk: Uint8Array, start: number, end: number): void {
    if (this.lost) return;
    let i = start;
    for (;;) {
      const body = this.clientBody;
      if (body > 0) {
        const available = end - i;
        if (body >= available) {
          this.clientBody = body - available;
          return;
        }
        i += body;
        this.clientBody = 0;
      }
      if (i >= end) return;
      let type: number;
      let length: number;
      if (this.clientHeaderNeed === 0 && end - i >= 5) {
        type = chunk[i]!;
        length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) >>> 0;
        i += 5;
      } else {
        let need = this.clientHeaderNeed;
        if (need === 0) {
          this.clientType = chunk[i++]!;
          this.clientLength = 0;
          need = 4;
        }
        while (need > 0 && i < end) {
          this.clientLength = ((this.clientLength << 8) | chunk[i++]!) >>> 0;
          need--;
        }
        this.clientHeaderNeed = need;
        if (need > 0) return;
        type = this.clientType;
        length = this.clientLength;
      }
      if (length < 4 || length > 0x7fffffff) {
        this.lost = true;
        return;
      }
      this.clientBody = length - 4;
      this.clientMessage(type);
    }
  }

  private clientMessage(type: number): void {
    switch (type) {
      case SYNC:
        this.owed++;
        this.extendedPending = false;
        if (this.lastWasExecute) this.syncsSinceExecute++;
        return;
      case QUERY:
      case FUNCTION_CALL:
        this.owed++;
        this.extendedPending = false;
        this.lastWasExecute = false;
        this.syncsSinceExecute = 0;
        this.serverInCopyIn = false;
        return;
      case EXECUTE:
        this.extendedPending = true;
        this.lastWasExecute = true;
        this.syncsSinceExecute = 0;
        this.serverInCopyIn = false;
        return;
      case PARSE:
      case BIND:
      case DESCRIBE:
      case CLOSE:
      case FLUSH:
        this.extendedPending = true;
        return;
      case COPY_DONE:
      case COPY_FAIL:
        if (this.serverInCopyIn && this.lastWasExecute) {
          // Already answered means the copy ended before reading them (an error): the count is off.
          if (this.owed < this.syncsSinceExecute) this.lost = true;
          this.owed -= this.syncsSinceExecute;
          this.syncsSinceExecute = 0;
        }
        this.serverInCopyIn = false;
        return;
      case TERMINATE:
        this.terminated = true;
        return;
      default:
        // CopyData and the authentication messages ('p') change nothing.
        return;
    }
  }

  private readyForQuery(status: number): void {
    if (this.owed <= 0 || (status !== STATUS_IDLE && status !== STATUS_IN_TRANSACTION && status !== STATUS_FAILED)) {
      // A ReadyForQuery nobody asked for, or an unknown status: the count can no longer be trusted.
      this.lost = true;
      return;
    }
    this.owed--;
    this.status = status;
  }
}
