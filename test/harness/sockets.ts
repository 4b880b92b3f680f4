// TCP sockets in tests: the kernel's view of them (/proc/net/tcp: which ones a process still holds, what sits unread), and a loopback pair.

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Teardown } from './cluster';

export interface TcpSocket {
  localPort: number;
  remotePort: number;
  /** The kernel's state code: '01' established, '0A' listening, '06' TIME_WAIT... */
  state: string;
  /** Bytes written and not yet acknowledged by the peer. */
  txQueue: number;
  /** Bytes received and not yet read by the process. */
  rxQueue: number;
  /** 0 once no process holds the socket (TIME_WAIT, or orphaned while it finishes closing). */
  inode: number;
}

export const LISTEN = '0A';

/** Every IPv4 and IPv6 TCP socket in this network namespace. */
export function tcpSockets(): TcpSocket[] {
  const out: TcpSocket[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // no IPv6 here
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [tx, rx] = f[4]!.split(':');
      out.push({
        localPort: parseInt(f[1]!.split(':')[1]!, 16),
        remotePort: parseInt(f[2]!.split(':')[1]!, 16),
        state: f[3]!,
        txQueue: parseInt(tx!, 16),
        rxQueue: parseInt(rx!, 16),
        inode: Number(f[9]),
      });
    }
  }
  return out;
}

/** Connections accepted on these listening ports that a process (pgfloat, in the test's own process) still holds open. */
export function heldConnectionsOn(ports: readonly number[]): TcpSocket[] {
  return tcpSockets().filter((s) => ports.includes(s.localPort) && s.state !== LISTEN && s.inode !== 0);
}

/** The socket from `localPort` to `remotePort`, if the kernel still has it. */
export function tcpSocket(localPort: number, remotePort: number): TcpSocket | undefined {
  return tcpSockets().find((s) => s.localPort === localPort && s.remotePort === remotePort && s.inode !== 0);
}

/**
 * A connected loopback pair, closed at teardown: `accepted` is the server's end (accepted paused
 * with `pauseOnConnect`), `peer` the client's.
 */
export async function loopbackPair(t: Teardown, { pauseOnConnect = false } = {}): Promise<{ accepted: Socket; peer: Socket }> {
  const server: Server = createServer({ pauseOnConnect });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const accepting = once(server, 'connection');
  const peer = connect(port, '127.0.0.1');
  const [accepted] = (await accepting) as [Socket];
  await once(peer, 'connect');
  t.teardown(() => {
    accepted.destroy();
    peer.destroy();
    server.close();
  });
  return { accepted, peer };
}
