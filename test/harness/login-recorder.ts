// A TCP relay in front of a server that records each connection's login as pgfloat would: the
// startup packet, and an AuthCapture fed with whole messages from both sides.

import { connect, createServer, type Server, type Socket } from 'node:net';
import { AuthCapture } from '../../src/auth/auth-capture';
import { MessageScanner } from '../../src/protocol/message-scanner';
import { parseStartupPacket } from '../../src/protocol/startup';
import { SSL_NOT_SUPPORTED } from '../../src/protocol/error-response';
import type { Teardown } from './cluster';

export interface RecordedLogin {
  /** The client's StartupMessage as sent, length word included; undefined until it is complete. */
  startupPacket: Buffer | undefined;
  capture: AuthCapture;
}

const EVERY_TYPE = new Set(Array.from({ length: 256 }, (_, type) => type));

export class LoginRecorder {
  /** One per connection, in the order they were accepted. */
  readonly logins: RecordedLogin[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Relays 127.0.0.1:<port> to targetHost:targetPort; the teardown closes it. */
  static async start(t: Teardown, targetPort: number, targetHost = '127.0.0.1'): Promise<LoginRecorder> {
    const server = createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const recorder = new LoginRecorder(server, (server.address() as { port: number }).port);
    server.on('connection', (client) => recorder.relay(client, targetPort, targetHost));
    t.teardown(() => recorder.close());
    return recorder;
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: Socket, targetPort: number, targetHost: string): void {
    const login: RecordedLogin = { startupPacket: undefined, capture: new AuthCapture() };
    this.logins.push(login);
    const upstream = connect({ port: targetPort, host: targetHost, noDelay: true });
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    const { capture } = login;
    const fromServer = new MessageScanner(EVERY_TYPE, (type, body) => capture.server(type, body));
    const fromClient = new MessageScanner(EVERY_TYPE, (type, body) => capture.client(type, body));
    let beforeStartup: Buffer | undefined = Buffer.alloc(0);

    upstream.on('data', (chunk: Buffer) => {
      // Watched before it is passed on, as pgfloat does: the capture is complete when the client hears it is in.
      if (!capture.done) fromServer.push(chunk);
      client.write(chunk);
    });
    client.on('data', (chunk: Buffer) => {
      if (beforeStartup === undefined) {
        if (!capture.done) fromClient.push(chunk);
        upstream.write(chunk);
        return;
      }
      let pending = Buffer.concat([beforeStartup, chunk]);
      for (;;) {
        const parsed = parseStartupPacket(pending);
        if (parsed.status === 'incomplete') {
          beforeStartup = pending;
          return;
        }
        if (parsed.status === 'ok' && parsed.packet.kind === 'ssl-request') {
          // The recorder must read the login, so it refuses TLS itself as a server without it would.
          client.write(SSL_NOT_SUPPORTED);
          pending = pending.subarray(parsed.length);
          continue;
        }
        if (parsed.status === 'ok' && parsed.packet.kind === 'startup') login.startupPacket = parsed.packet.raw;
        beforeStartup = undefined;
        const length = parsed.status === 'ok' ? parsed.length : pending.length;
        upstream.write(pending);
        fromClient.push(pending.subarray(length));
        return;
      }
    });
  }
}
