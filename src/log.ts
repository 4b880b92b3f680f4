// The process-wide structured logger; secrets are redacted by key wherever they appear.

import pino, { type Logger } from 'pino';

export type { Logger };

export const REDACTED_KEYS = [
  'password', '*.password', '*.*.password',
  'replicationPassword', '*.replicationPassword', '*.*.replicationPassword',
  'token', '*.token', 'connectionString',
  // Login secrets (src/auth) redact themselves; these catch one copied out into a log field.
  'clientKey', '*.clientKey', 'serverKey', '*.serverKey', 'storedHash', '*.storedHash', 'clientProof', '*.clientProof',
];

export function createLogger(level: string = process.env.PGFLOAT_LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { app: 'pgfloat' },
    redact: { paths: REDACTED_KEYS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything, for library use and tests that do not look at logs. */
export const silentLogger: Logger = pino({ level: 'silent' });

/**
 * Writes lines that are already log records (a relay worker's JSON) to where `log` writes, as
 * they are: one destination for the whole instance, whether that is stdout or a test's capture.
 */
export function lineWriter(log: Logger): (line: string) => void {
  const stream = (log as unknown as Record<symbol, { write(text: string): void } | undefined>)[pino.symbols.streamSym];
  return stream ? (line) => stream.write(`${line}\n`) : (line) => process.stdout.write(`${line}\n`);
}
