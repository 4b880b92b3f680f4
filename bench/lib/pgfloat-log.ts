// Reads back the JSON log (pino) of a `pgfloat start` process that a bench ran.

import { readFileSync } from 'node:fs';

export interface PgfloatLogLine {
  /** ms since the epoch. */
  at: number;
  /** pino's number: 30 info, 40 warn, 50 error. */
  level: number;
  component: string;
  msg: string;
  /** Everything else the line carries (node, from, to, newPrimary, ...). */
  fields: Record<string, unknown>;
}

export function readPgfloatLog(file: string): PgfloatLogLine[] {
  const lines: PgfloatLogLine[] = [];
  for (const text of readFileSync(file, 'utf8').split('\n')) {
    if (!text.startsWith('{')) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(text) as Record<string, unknown>;
    } catch {
      continue; // not a log line
    }
    const { level, time, component, msg, app: _app, pid: _pid, hostname: _hostname, ...fields } = entry;
    lines.push({
      at: typeof time === 'number' ? time : Date.parse(String(time)),
      level: typeof level === 'number' ? level : 0,
      component: String(component ?? ''),
      msg: String(msg ?? ''),
      fields,
    });
  }
  return lines;
}
