// The relay's read buffers, and a small free list that passes them from closed sessions to new ones.
//
// Each buffer is an ArrayBuffer outside the V8 heap, and V8 schedules a full mark-compact when
// such external memory grows: two fresh 64 kB buffers per connection made one every ~300 ms at
// ~200 connections/s (pgbench -C, --trace-gc, 2026-12-03), the largest part of the CPU a short
// connection cost. Reused, they never count as new external memory.

/** Both directions read into buffers of this size: one socket buffer's worth per read. */
export const READ_BUFFER_SIZE = 64 * 1024;

/** How many idle buffers are kept (4 MB): enough for bursts of connections, bounded after a peak. */
const MAX_FREE = 64;

const free: Buffer[] = [];

/** A buffer of READ_BUFFER_SIZE bytes, its content undefined. */
export function takeReadBuffer(): Buffer {
  return free.pop() ?? Buffer.allocUnsafe(READ_BUFFER_SIZE);
}

/**
 * Gives `buffer` back for another session. Only for a buffer nothing refers to any more: no
 * pending write points into it, no socket will read into it again.
 */
export function giveBackReadBuffer(buffer: Buffer): void {
  if (free.length < MAX_FREE && buffer.byteLength === READ_BUFFER_SIZE && buffer.buffer.byteLength === READ_BUFFER_SIZE && !free.includes(buffer)) free.push(buffer);
}

/** Idle buffers held (for tests). */
export function freeReadBuffers(): number {
  return free.length;
}
