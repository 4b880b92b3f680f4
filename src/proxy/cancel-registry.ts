// Maps each session's BackendKeyData to the server that issued it, so CancelRequests reach that server.

import type { ServerTlsPolicy } from '../postgres/server-tls';
import { cancelRequest } from '../protocol/startup';
import { openServerSocket } from './server-socket';

export interface BackendAddress {
  node: string;
  host: string;
  port: number;
  /** The node's serverTls: a cancel goes the way sessions do, so its key is not sent in the clear where they are not. */
  tls?: ServerTlsPolicy;
  /** The backend's own key, when it is not the one the client holds (the session moved to another server). */
  processId?: number;
  secretKey?: Buffer;
}

export class CancelRegistry {
  private readonly byKey = new Map<string, BackendAddress>();

  private static key(processId: number, secretKey: Buffer): string {
    return `${processId}:${secretKey.toString('hex')}`;
  }

  register(processId: number, secretKey: Buffer, backend: BackendAddress): string {
    const key = CancelRegistry.key(processId, secretKey);
    this.byKey.set(key, backend);
    return key;
  }

  /** The session moved: the key its client holds now cancels `backend`. */
  retarget(key: string, backend: BackendAddress): void {
    if (this.byKey.has(key)) this.byKey.set(key, backend);
  }

  unregister(key: string): void {
    this.byKey.delete(key);
  }

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Forwards a cancel to the owning server. Unknown keys are dropped without a word, as
   * PostgreSQL does, so a client cannot probe which keys exist.
   */
  forward(processId: number, secretKey: Buffer, timeoutMs: number): BackendAddress | undefined {
    const backend = this.byKey.get(CancelRegistry.key(processId, secretKey));
    if (backend === undefined) return undefined;
    const pending = openServerSocket({ name: backend.node, host: backend.host, port: backend.port, tls: backend.tls }, { connectTimeoutMs: timeoutMs, keepaliveIdleMs: timeoutMs });
    pending.opened.then(
      ({ socket }) => {
        socket.setTimeout(timeoutMs, () => socket.destroy());
        socket.on('error', () => socket.destroy());
        socket.end(cancelRequest(backend.processId ?? processId, backend.secretKey ?? secretKey));
        socket.resume(); // the server answers by closing; nothing else is read
      },
      () => undefined, // as PostgreSQL's own clients, a cancel that cannot be delivered is not reported
    );
    return backend;
  }
}
