// Puts a ChannelBindingBridge between a session's client and its TLS server for the login: frames
// each direction into whole messages, passes them through the bridge in order, and steps aside
// once the login is over. Only sessions whose server leg is TLS pay for it, and only at login.

import { ChannelBindingBridge } from '../auth/channel-binding';
import type { ClientToServerPump, ServerToClientPump } from './relay';

const EMPTY: Buffer = Buffer.alloc(0);

export interface BridgeEnds {
  clientPump: ClientToServerPump;
  serverPump: ServerToClientPump;
  /** The login cannot go on through pgfloat: refuse the client, saying why. */
  refuse(err: Error): void;
}

/** Splits whole typed messages off the front of `bytes`; the rest is an incomplete one. Undefined past a length below 4. */
function wholeMessages(bytes: Buffer): { messages: Buffer[]; rest: Buffer } | undefined {
  const messages: Buffer[] = [];
  let offset = 0;
  while (bytes.length - offset >= 5) {
    const length = bytes.readInt32BE(offset + 1);
    if (length < 4) return undefined;
    if (bytes.length - offset < 1 + length) break;
    messages.push(bytes.subarray(offset, offset + 1 + length));
    offset += 1 + length;
  }
  return { messages, rest: bytes.subarray(offset) };
}

export class AuthBridge {
  private clientBytes: Buffer = EMPTY;
  private serverBytes: Buffer = EMPTY;
  /** Client messages behind one the bridge is still rewriting (it waits for the role's verifier). */
  private held: Buffer[] | undefined;
  private ended = false;

  private constructor(
    private readonly bridge: ChannelBindingBridge,
    private readonly ends: BridgeEnds,
  ) {}

  static install(rolePassword: () => Promise<string | null>, ends: BridgeEnds): void {
    const relay = new AuthBridge(new ChannelBindingBridge(rolePassword), ends);
    ends.clientPump.intercept = relay.fromClient;
    ends.serverPump.intercept = relay.fromServer;
  }

  private readonly fromClient = (chunk: Buffer): void => {
    // The chunk is only valid during the call.
    this.clientBytes = this.clientBytes.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.clientBytes, chunk]);
    const split = wholeMessages(this.clientBytes);
    if (split === undefined) return this.stepAside(); // not a stream the bridge can follow: the server judges it
    this.clientBytes = split.rest;
    for (const message of split.messages) {
      if (this.held !== undefined) this.held.push(message);
      else this.toServer(message);
    }
  };

  private readonly fromServer = (chunk: Buffer): void => {
    this.serverBytes = this.serverBytes.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.serverBytes, chunk]);
    const split = wholeMessages(this.serverBytes);
    if (split === undefined) return this.stepAside();
    this.serverBytes = split.rest;
    for (const message of split.messages) {
      let out: Buffer;
      try {
        out = this.bridge.finished ? message : this.bridge.server(message);
      } catch (err) {
        return this.ends.refuse(err as Error);
      }
      this.ends.serverPump.send(out);
    }
    if (this.bridge.finished) this.finishIfIdle();
  };

  private toServer(message: Buffer): void {
    let out: Buffer | Promise<Buffer>;
    try {
      out = this.bridge.client(message);
    } catch (err) {
      return this.ends.refuse(err as Error);
    }
    if (Buffer.isBuffer(out)) return this.ends.clientPump.send(out);
    const held: Buffer[] = (this.held = []);
    out.then(
      (rewritten) => {
        if (this.ended) return;
        this.held = undefined;
        this.ends.clientPump.send(rewritten);
        // In order; another message that has to wait takes the rest behind it.
        while (held.length > 0 && !this.waiting()) this.toServer(held.shift()!);
        if (this.waiting()) this.held!.push(...held);
        if (this.bridge.finished) this.finishIfIdle();
      },
      (err: Error) => {
        if (!this.ended) this.ends.refuse(err);
      },
    );
  }

  private waiting(): boolean {
    return this.held !== undefined;
  }

  private finishIfIdle(): void {
    if (!this.waiting()) this.stepAside();
  }

  /** Whatever is buffered goes on as it is, and the pumps relay directly again. */
  private stepAside(): void {
    if (this.ended) return;
    this.ended = true;
    const { clientPump, serverPump } = this.ends;
    clientPump.intercept = undefined;
    serverPump.intercept = undefined;
    if (this.serverBytes.length > 0) serverPump.send(this.serverBytes);
    if (this.clientBytes.length > 0) clientPump.send(this.clientBytes);
    this.serverBytes = this.clientBytes = EMPTY;
  }
}
