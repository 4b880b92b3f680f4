// proxy.workers: a client that no relay worker can take in time still gets an ErrorResponse from the control process, never a bare close.

import { createServer, type AddressInfo } from 'node:net';
import t from 'tap';
import { silentLogger } from '../../src/log';
import { startupMessage } from '../../src/protocol/startup';
import { Router } from '../../src/routing/router';
import { WorkerPool } from '../../src/workers/worker-pool';
import { parseErrorResponse, rawConnect } from '../harness/clients';

t.test('no worker ready within proxy.startupTimeoutMs: 57P03 with the reason', async (t) => {
  const router = new Router({ fallbackToPrimary: true, holdMs: 1000 }, silentLogger);
  const settings = {
    nodes: [],
    rules: [],
    tls: null,
    startupTimeoutMs: 300,
    connectTimeoutMs: 1000,
    keepaliveIdleMs: 30_000,
    holdMs: 1000,
    busyPollUs: 0,
    fallbackToPrimary: true,
    moveTimeoutMs: null,
  };
  // Never launched: no worker is ever ready, as when every one of them keeps crashing.
  const pool = new WorkerPool(settings, 2, router, 'silent', silentLogger, { expedite: () => undefined, workers: () => undefined });
  const server = createServer({ pauseOnConnect: true }, (socket) => pool.start('readWrite', socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  const conn = await rawConnect((server.address() as AddressInfo).port);
  conn.socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
  const { data } = await conn.closed;
  t.equal(String.fromCharCode(data[0]!), 'E', 'an ErrorResponse, not a bare close');
  const error = parseErrorResponse(data);
  t.equal(error.code, '57P03');
  t.match(error.message, /relay workers are restarting/);

  const late = await rawConnect((server.address() as AddressInfo).port);
  late.socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
  await pool.stop({ reason: 'shutting-down', code: '57P01', message: 'terminating connection: pgfloat is shutting down' });
  const closed = await late.closed;
  t.equal(parseErrorResponse(closed.data).code, '57P01', 'a client still waiting for a worker is told pgfloat is stopping');
  server.close();
});
