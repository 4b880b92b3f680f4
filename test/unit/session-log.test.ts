// SessionLog: the session's pino child is made only for a message at an enabled level, once, with the session's bindings.

import t from 'tap';
import { createLogger, type Logger } from '../../src/log';
import { SessionLog } from '../../src/proxy/session-log';

function capture(level: string): { log: Logger; lines: Array<Record<string, unknown>>; children: () => number } {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger(level, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  let made = 0;
  const child = log.child.bind(log);
  log.child = ((...args: Parameters<Logger['child']>) => {
    made++;
    return child(...args);
  }) as Logger['child'];
  return { log, lines, children: () => made };
}

t.test('messages below the level make no child and write nothing', async (t) => {
  const { log, lines, children } = capture('warn');
  const session = new SessionLog(log, { session: 1, remote: '127.0.0.1:5000' });
  session.debug({ node: 'n1' }, 'session established');
  session.info({ node: 'n1' }, 'closing');
  t.equal(children(), 0);
  t.equal(lines.length, 0);
});

t.test('a message at an enabled level carries the bindings; the child is made once', async (t) => {
  const { log, lines, children } = capture('debug');
  const session = new SessionLog(log, { session: 7, listener: 'readWrite', remote: '127.0.0.1:5000' });
  session.debug({ node: 'n1' }, 'first');
  session.warn({ node: 'n2' }, 'second');
  t.equal(children(), 1);
  t.match(lines, [
    { level: 20, session: 7, listener: 'readWrite', remote: '127.0.0.1:5000', node: 'n1', msg: 'first' },
    { level: 40, session: 7, node: 'n2', msg: 'second' },
  ]);
});

t.test('redaction still applies to the fields', async (t) => {
  const { log, lines } = capture('info');
  new SessionLog(log, { session: 2 }).error({ password: 'secret' }, 'oops');
  t.equal(lines[0]!.password, '[redacted]');
});
