// SCRAM channel binding through a proxy that terminates TLS on both sides.
//
// A client's SCRAM-SHA-256-PLUS binds its proof to the certificate of the TLS endpoint it talks
// to: pgfloat's. The server checks the binding against its own certificate, so it can never
// succeed through pgfloat, and the mechanism is not offered to the client. A client that supports
// binding then says so with the gs2 flag 'y' ("I could bind, the server cannot"), which a server
// on TLS rightly takes for a downgrade attack and refuses. Between the two TLS channels that flag
// is true for the client's leg and false for the server's, so pgfloat states 'n' to the server and
// re-signs the exchange for the server's view: the role's verifier (sessions.authQuery) turns the
// client's proof into its ClientKey, which signs the rewritten message, and the server's signature
// is checked, then signed again for the client's view, so the client still authenticates the
// server. A wrong password stays wrong: its proof does not unmask to the verifier's key.

import { MessageType } from '../protocol/message-scanner';
import {
  authenticationSasl,
  authenticationSaslFinal,
  parseAuthenticationRequest,
  parseSaslInitialResponse,
  saslInitialResponse,
  saslResponse,
} from './auth-messages';
import {
  authMessage,
  clientKeyFromProof,
  clientProof,
  decodeBase64,
  parseScramVerifier,
  sameBytes,
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  scramAttributes,
  serverSignature,
  type ScramVerifier,
} from './scram';

/** base64 of the gs2 headers "y,," and "n,,", as the client-final message's c= attribute carries them. */
const CLIENT_COULD_BIND = 'eSws';
const CLIENT_DOES_NOT_BIND = 'biws';

/** pgfloat cannot relay this login: the session is refused with this message. */
export class ChannelBindingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChannelBindingError';
  }
}

export class ChannelBindingBridge {
  /** True once the login is over (or needs nothing of the bridge): messages then pass as they are. */
  finished = false;
  private phase: 'offer' | 'first' | 'continue' | 'final' | 'server-final' = 'offer';
  private clientFirstBare = '';
  private serverFirst = '';
  /** The exchange as the client signed it and as the server checks it. */
  private clientView = '';
  private serverView = '';
  private verifier: Promise<ScramVerifier> | undefined;
  private serverKey: Buffer | undefined;

  /** `rolePassword` runs the auth query for the session's role, on its server. */
  constructor(private readonly rolePassword: () => Promise<string | null>) {}

  /** A whole server message (header included); returns what the client gets instead. */
  server(message: Buffer): Buffer {
    const type = message[0];
    if (type === MessageType.errorResponse) this.finished = true;
    if (type !== MessageType.authentication || this.finished) return message;
    const request = parseAuthenticationRequest(message.subarray(5));
    switch (request.kind) {
      case 'sasl':
        if (this.phase !== 'offer' || !request.mechanisms.includes(SCRAM_SHA_256_PLUS)) {
          this.finished = true;
          return message;
        }
        this.phase = 'first';
        return authenticationSasl(request.mechanisms.filter((m) => m !== SCRAM_SHA_256_PLUS));
      case 'sasl-continue':
        if (this.phase === 'continue') {
          this.serverFirst = request.data.toString('utf8');
          this.phase = 'final';
        }
        return message;
      case 'sasl-final':
        if (this.phase !== 'server-final') return message;
        this.finished = true;
        return authenticationSaslFinal(this.resignServerFinal(request.data.toString('utf8')));
      default:
        this.finished = true;
        return message;
    }
  }

  /** A whole client message (header included); returns, or resolves to, what the server gets instead. */
  client(message: Buffer): Buffer | Promise<Buffer> {
    if (message[0] !== MessageType.password || this.finished) return message;
    if (this.phase === 'first') return this.clientFirst(message);
    if (this.phase === 'final') return this.clientFinal(message.subarray(5).toString('utf8'));
    return message;
  }

  private clientFirst(message: Buffer): Buffer {
    const { mechanism, data } = parseSaslInitialResponse(message.subarray(5));
    const text = data?.toString('utf8') ?? '';
    // Only "y,," needs pgfloat: 'n' is fine on any channel, and anything else the server judges itself.
    if (mechanism !== SCRAM_SHA_256 || !text.startsWith('y,,')) {
      this.finished = true;
      return message;
    }
    this.clientFirstBare = text.slice(3);
    this.phase = 'continue';
    // Asked now, so the answer is usually there when the client's proof arrives, a round trip later.
    this.verifier = this.lookUpVerifier();
    this.verifier.catch(() => undefined);
    return saslInitialResponse(SCRAM_SHA_256, Buffer.from(`n,,${this.clientFirstBare}`, 'utf8'));
  }

  private async clientFinal(text: string): Promise<Buffer> {
    this.phase = 'server-final';
    const at = text.lastIndexOf(',p=');
    const withoutProof = at === -1 ? '' : text.slice(0, at);
    const proof = decodeBase64(text.slice(at + 3));
    if (at === -1 || proof === undefined || !withoutProof.startsWith(`c=${CLIENT_COULD_BIND},`) || scramAttributes(withoutProof) === undefined) {
      throw new ChannelBindingError('malformed SCRAM client-final message');
    }
    const verifier = await this.verifier!;
    const serverWithoutProof = `c=${CLIENT_DOES_NOT_BIND}${withoutProof.slice(2 + CLIENT_COULD_BIND.length)}`;
    this.clientView = authMessage(this.clientFirstBare, this.serverFirst, withoutProof);
    this.serverView = authMessage(this.clientFirstBare, this.serverFirst, serverWithoutProof);
    this.serverKey = verifier.serverKey;
    const clientKey = clientKeyFromProof(verifier.storedKey, this.clientView, proof);
    // A proof that does not fit the verifier (a wrong password) goes on as it is, for the server to refuse in its own words.
    const serverProof = clientKey === undefined ? proof : clientProof(clientKey, this.serverView);
    return saslResponse(Buffer.from(`${serverWithoutProof},p=${serverProof.toString('base64')}`, 'utf8'));
  }

  /**
   * The server proved it holds the ServerKey for the server's view; the client gets the same proof
   * for its own view. A signature that does not check out is passed on, so the client refuses it.
   */
  private resignServerFinal(text: string): Buffer {
    const signature = text.startsWith('v=') ? decodeBase64(text.slice(2)) : undefined;
    if (signature === undefined || !sameBytes(signature, serverSignature(this.serverKey!, this.serverView))) return Buffer.from(text, 'utf8');
    return Buffer.from(`v=${serverSignature(this.serverKey!, this.clientView).toString('base64')}`, 'utf8');
  }

  private async lookUpVerifier(): Promise<ScramVerifier> {
    let rolpassword: string | null;
    try {
      rolpassword = await this.rolePassword();
    } catch (err) {
      throw new ChannelBindingError(`the auth query (sessions.authQuery) failed: ${(err as Error).message}`);
    }
    const verifier = rolpassword === null ? undefined : parseScramVerifier(rolpassword);
    if (verifier === undefined) throw new ChannelBindingError('the auth query (sessions.authQuery) gave no SCRAM verifier for the role');
    return verifier;
  }
}
