// Walks both directions of an established session's message framing to tell when it is idle at a transaction boundary.

import { FRAME_INVALID, MessageFramer, messageTypes } from './message-framer';

// Compared on every chunk: V8 folds a module-level const, but reads the import as a property each time.
const INVALID = FRAME_INVALID;

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

// The messages each side's walk stops at; the rest (DataRow, CopyData...) are skipped by length.
const SERVER_STOPS = messageTypes([READY_FOR_QUERY, COPY_IN_RESPONSE]);
const CLIENT_STOPS = messageTypes([SYNC, QUERY, FUNCTION_CALL, EXECUTE, PARSE, BIND, DESCRIBE, CLOSE, FLUSH, COPY_DONE, COPY_FAIL, TERMINATE]);

/**
 * Feed it every byte of both streams after the StartupMessage, in the order they are relayed
 * (`client` before forwarding a client chunk, `server` before forwarding a server chunk). It
 * never copies or throws: a MessageFramer per direction skips bodies by length and keeps split
 * headers in a few integers, and a framing error only marks it lost (never idle again).
 *
 * The server starts owing one ReadyForQuery, the one that ends the startup; after that every
 * Query, Sync and FunctionCall the client sends is owed one more.
 */
export class TransactionTracker {
  private readonly fromServer = new MessageFramer();
  private readonly fromClient = new MessageFramer();
  /** The server's chunk ended right after a ReadyForQuery header: its status byte opens the next one. */
  private serverWantsStatus = false;

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

  /** A tracker for a session whose startup is already answered (one moved to another server): idle. */
  static afterStartup(): TransactionTracker {
    const tracker = new TransactionTracker();
    tracker.owed = 0;
    return tracker;
  }

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
      this.fromServer.atBoundary() &&
      this.fromClient.atBoundary() &&
      !this.lost &&
      !this.terminated
    );
  }

  /** True when the bytes relayed to the client end between two messages, so one more can be injected. */
  atServerBoundary(): boolean {
    return this.fromServer.atBoundary() && !this.lost;
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
    const framer = this.fromServer;
    if (this.serverWantsStatus) {
      if (start >= end) return;
      this.serverWantsStatus = false;
      this.readyForQuery(chunk[start]!);
      if (this.lost) return;
    }
    framer.offset = start;
    let type: number;
    while ((type = framer.next(chunk, end, SERVER_STOPS)) >= 0) {
      if (type !== READY_FOR_QUERY) {
        // COPY_IN_RESPONSE, the only other stop.
        this.serverInCopyIn = true;
        continue;
      }
      if (framer.bodyLeft === 0) {
        this.lost = true;
        return;
      }
      const i = framer.offset;
      if (i >= end) {
        this.serverWantsStatus = true;
        return;
      }
      this.readyForQuery(chunk[i]!);
      if (this.lost) return;
    }
    if (type === INVALID) this.lost = true;
  }

  /** Bytes the client sent, `chunk[start..end)`. */
  client(chunk: Uint8Array, start: number, end: number): void {
    if (this.lost) return;
    const framer = this.fromClient;
    framer.offset = start;
    let type: number;
    while ((type = framer.next(chunk, end, CLIENT_STOPS)) >= 0) this.clientMessage(type);
    if (type === INVALID) this.lost = true;
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
        this.startCommand(false);
        return;
      case EXECUTE:
        this.startCommand(true);
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
        // Not reached: the framer stops only at CLIENT_STOPS, and skips CopyData and the
        // authentication messages ('p'), which change nothing.
        return;
    }
  }

  /**
   * Query, FunctionCall and Execute each start a command, so any COPY FROM STDIN before it is
   * over; only Execute leaves work that waits for a Sync.
   */
  private startCommand(isExecute: boolean): void {
    this.extendedPending = isExecute;
    this.lastWasExecute = isExecute;
    this.syncsSinceExecute = 0;
    this.serverInCopyIn = false;
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
