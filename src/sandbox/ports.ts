// Free TCP ports below the ephemeral range for the sandbox, tests and benches (PostgreSQL needs a fixed port, so port 0 will not do).

import { createServer } from 'node:net';

const handedOut = new Set<number>();

function tryBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port in [20000, 32000) that is free now and that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (handedOut.has(port)) continue;
    if (await tryBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found in [20000, 32000)');
}
