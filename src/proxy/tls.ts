// Client-facing TLS: loads the certificate once and upgrades a socket after an SSLRequest.

import { readFileSync } from 'node:fs';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { Socket } from 'node:net';

export interface TlsFiles {
  cert: string;
  key: string;
}

export function loadSecureContext(files: TlsFiles): SecureContext {
  try {
    return createSecureContext({ cert: readFileSync(files.cert), key: readFileSync(files.key) });
  } catch (err) {
    throw new Error(`cannot load TLS certificate ${files.cert} / key ${files.key}: ${(err as Error).message}`);
  }
}

export function upgradeToTls(socket: Socket, secureContext: SecureContext): TLSSocket {
  return new TLSSocket(socket, { isServer: true, secureContext });
}
