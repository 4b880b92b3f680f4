// Finds the typed messages (type byte, int32 length, body) in a stream that arrives in chunks split anywhere.

// Module-local, not `exports.X`: TypeScript compiles uses of an exported const into property
// loads that V8 does not fold, and these are compared once per message.
const END = -1;
const INVALID = -2;

/** `next()` found no further message of the types asked for in this chunk: feed the next one. */
export const FRAME_END = END;
/** `next()` read a length below 4 (negative included): the stream cannot be framed any further. */
export const FRAME_INVALID = INVALID;

/** The message types a walk stops at: a table indexed by type byte, 1 to stop. Build it once per caller, not per chunk. */
export type MessageTypes = Uint8Array;

export function messageTypes(types: Iterable<number>): MessageTypes {
  const table = new Uint8Array(256);
  for (const type of types) table[type] = 1;
  return table;
}

/**
 * A cursor over one direction of a session (protocol 3, after the startup packet), in the style of
 * pg-protocol's parser but without its buffering and callbacks: for each chunk, set `offset` to
 * where the chunk's bytes start, then call `next(chunk, end, stopAt)` until it returns a negative
 * number. Each call walks past the rest of the current body and every message whose type is not
 * in `stopAt`, and returns the type of the next one that is, its body starting at `offset`.
 *
 * It runs on every chunk of every session, so: messages in between are skipped by length in a
 * loop that keeps its state in locals (DataRows cost no stores); between chunks only a few
 * integers are kept (body bytes left, and a split header's bytes so far); nothing is allocated,
 * copied or called back.
 *
 * After `next()` returns a type, `bodyLeft` is that message's whole body length, of which
 * `chunk[offset, bodyEnd(end))` is in this chunk. At the start of a chunk, a non-zero `bodyLeft`
 * means the chunk opens with the rest of the current body (of a message stopped at, or not).
 */
export class MessageFramer {
  /** In the current chunk: where the walk is; after `next()` returns a type, where that message's body starts. */
  offset = 0;
  /** Body bytes of the current message not yet walked past. */
  bodyLeft = 0;
  /** The type and length field of the header that made `next()` return FRAME_INVALID, for messages. */
  invalidType = 0;
  invalidLength = 0;
  /** Header bytes still to come: 0 at a boundary or inside a body, 1 to 4 inside a split header. */
  private headerNeed = 0;
  /** A split header's type and length bytes so far. */
  private partialType = 0;
  private partialLength = 0;

  /** True when the bytes seen so far end exactly between two messages. */
  atBoundary(): boolean {
    return this.bodyLeft === 0 && this.headerNeed === 0;
  }

  /** The end, in this chunk, of the current body's bytes from `offset` on. */
  bodyEnd(end: number): number {
    const offset = this.offset;
    const left = this.bodyLeft;
    return end - offset > left ? offset + left : end;
  }

  /**
   * Walks `chunk[offset, end)` to the next message whose type is in `stopAt` and returns its
   * type; or FRAME_END when the chunk ends first (a split header is kept for the next chunk), or
   * FRAME_INVALID on an impossible length.
   */
  next(chunk: Uint8Array, end: number, stopAt: MessageTypes): number {
    let i = this.offset;
    let body = this.bodyLeft;
    if (this.headerNeed !== 0) {
      // The rest of a header the previous chunk split. Out of line: it is rare, and keeping it
      // out keeps this method small enough for V8 to inline into each caller's loop.
      const type = this.finishHeader(chunk, i, end);
      if (type < 0 || stopAt[type] !== 0) return type;
      i = this.offset;
      body = this.bodyLeft;
    }
    for (;;) {
      if (body >= end - i) {
        this.bodyLeft = body - (end - i);
        return END;
      }
      i += body;
      if (end - i < 5) {
        // The chunk ends inside a header: keep its first bytes.
        this.bodyLeft = 0;
        this.headerNeed = 5 - (end - i);
        this.partialType = chunk[i]!;
        let length = 0;
        while (++i < end) length = (length << 8) | chunk[i]!;
        this.partialLength = length;
        return END;
      }
      const type = chunk[i]!;
      // The signed int32 it is on the wire: one comparison refuses the negative and the too short.
      const length = (chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!;
      if (length < 4) return this.invalid(type, length);
      i += 5;
      body = length - 4;
      if (stopAt[type] !== 0) {
        this.offset = i;
        this.bodyLeft = body;
        return type;
      }
    }
  }

  /** Takes the rest of a split header from `chunk[from, end)`: its type, with `offset` and `bodyLeft` set, or FRAME_END or FRAME_INVALID. */
  private finishHeader(chunk: Uint8Array, from: number, end: number): number {
    let need = this.headerNeed;
    let length = this.partialLength;
    let i = from;
    for (; need > 0 && i < end; need--) length = (length << 8) | chunk[i++]!;
    this.headerNeed = need;
    this.partialLength = length;
    if (need > 0) return END;
    if (length < 4) return this.invalid(this.partialType, length);
    this.offset = i;
    this.bodyLeft = length - 4;
    return this.partialType;
  }

  private invalid(type: number, length: number): number {
    this.invalidType = type;
    this.invalidLength = length;
    this.bodyLeft = 0;
    return INVALID;
  }
}
