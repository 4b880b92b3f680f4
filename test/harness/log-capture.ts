// pgfloat's JSON log lines kept in memory, so a test can read what pgfloat said and when.

import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log';

export interface LogLine {
  /** Milliseconds since the epoch, from the line's ISO time. */
  at: number;
  level: number;
  msg: string;
  component?: string;
  [field: string]: unknown;
}

export interface CapturedLog {
  logger: Logger;
  lines(): LogLine[];
  /** Everything written, as written: for scanning for secrets. */
  text(): string;
}

/** A logger at `level` whose lines are kept; also echoed to stderr when PGFLOAT_TEST_LOG is set. */
export function captureLog(level = 'info'): CapturedLog {
  const chunks: string[] = [];
  const echo = process.env.PGFLOAT_TEST_LOG !== undefined;
  const sink = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const text = chunk.toString();
      chunks.push(text);
      if (echo) process.stderr.write(text);
      done();
    },
  });
  return {
    logger: createLogger(level, sink),
    lines: () => parseLogLines(chunks.join('')),
    text: () => chunks.join(''),
  };
}

/** Parses pino's JSON lines; lines that are not JSON (a child's stray output) are skipped. */
export function parseLogLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      out.push({ ...parsed, at: Date.parse(String(parsed.time)), level: Number(parsed.level), msg: String(parsed.msg ?? '') });
    } catch {
      // not a log line
    }
  }
  return out;
}
