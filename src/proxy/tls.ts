// Client-facing TLS: the certificate (reloadable), the ALPN and client-certificate rules PostgreSQL 17 applies, and the socket upgrade.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import { checkCertificates } from '../postgres/server-tls';

export type ClientCertificates = 'none' | 'verify' | 'require';

/** The `tls` section: file paths only, so it travels to relay workers as is (they read the files themselves). */
export interface ClientTlsSettings {
  cert: string;
  key: string;
  /** Trusted CAs for client certificates; needed by clientCertificates verify and require. */
  ca: string | null;
  clientCertificates: ClientCertificates;
}

/** PostgreSQL 17's ALPN protocol name (PG_ALPN_PROTOCOL). */
export const PG_ALPN_PROTOCOL = 'postgresql';

/** What is shown of a loaded certificate: never the key, never the file contents. */
export interface CertificateSummary {
  fingerprint256: string;
  serialNumber: string;
  subject: string;
  validTo: string;
}

export type TlsLoadResult = { ok: true; certificate: CertificateSummary } | { ok: false; reason: string };

/** The verdict on a finished handshake: admitted (with the client certificate's CN, if any), or closed without a word. */
export type TlsAdmission = { ok: true; clientCn: string | undefined } | { ok: false; message: string };

interface Loaded {
  context: SecureContext;
  certificate: CertificateSummary;
}

export class ClientTlsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClientTlsError';
  }
}

function readTlsFile(key: 'cert' | 'key' | 'ca', path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ClientTlsError(`cannot read tls.${key} ${path}: ${(err as Error).message}`);
  }
}

/** Node's createSecureContext takes a CA file with no certificate in it without complaint: checked here. */
function checkCaFile(path: string, pem: Buffer): void {
  try {
    checkCertificates(pem);
  } catch (err) {
    throw new ClientTlsError(`tls.ca ${path}: ${(err as Error).message}`);
  }
}

/** Reads and checks the files; every error names the file and the reason, never what is in it. */
function loadFiles(settings: ClientTlsSettings): Loaded {
  const cert = readTlsFile('cert', settings.cert);
  const key = readTlsFile('key', settings.key);
  const ca = settings.ca === null ? undefined : readTlsFile('ca', settings.ca);
  if (ca !== undefined) checkCaFile(settings.ca!, ca);
  let certificate: CertificateSummary;
  try {
    const x509 = new X509Certificate(cert);
    certificate = { fingerprint256: x509.fingerprint256, serialNumber: x509.serialNumber, subject: x509.subject.replace(/\n/g, ', '), validTo: x509.validTo };
  } catch (err) {
    throw new ClientTlsError(`tls.cert ${settings.cert}: not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    return { context: createSecureContext({ cert, key, ...(ca !== undefined && { ca }) }), certificate };
  } catch (err) {
    // OpenSSL's reason ("key values mismatch", "bad decrypt", "no start line"): the pair is what failed.
    throw new ClientTlsError(`tls.cert ${settings.cert} with tls.key ${settings.key}: ${(err as Error).message}`);
  }
}

/**
 * The client-facing certificate of one relay loop. A reload replaces the context for the
 * handshakes that start afterwards; sockets already upgraded keep theirs. A broken set of files
 * leaves the current context in place.
 */
export class ClientTls {
  private loaded: Loaded;

  /** Throws a ClientTlsError when the files cannot be used: at startup there is no older certificate to fall back on. */
  constructor(readonly settings: ClientTlsSettings) {
    this.loaded = loadFiles(settings);
  }

  get certificate(): CertificateSummary {
    return this.loaded.certificate;
  }

  reload(): TlsLoadResult {
    try {
      this.loaded = loadFiles(this.settings);
      return { ok: true, certificate: this.loaded.certificate };
    } catch (err) {
      return { ok: false, reason: err instanceof ClientTlsError ? err.message : `cannot load the TLS files: ${(err as Error).message}` };
    }
  }

  upgrade(socket: Socket): TLSSocket {
    const mode = this.settings.clientCertificates;
    return new TLSSocket(socket, {
      isServer: true,
      secureContext: this.loaded.context,
      // As PostgreSQL 17 (be-secure-openssl.c alpn_cb): a client offering ALPN must offer
      // "postgresql", or the handshake ends with a no_application_protocol alert. One offering no
      // ALPN at all is not asked; the direct-TLS path refuses it after the handshake.
      ALPNCallback: ({ protocols }) => (protocols.includes(PG_ALPN_PROTOCOL) ? PG_ALPN_PROTOCOL : undefined),
      requestCert: mode !== 'none',
      // With require OpenSSL itself fails a handshake without a certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
      rejectUnauthorized: mode === 'require',
    });
  }

  /**
   * Judges a finished handshake. Node checks a client certificate's chain only for sockets a
   * tls.Server made (its `authorized`); these are upgraded by hand, so the verdict is read here.
   */
  admit(socket: TLSSocket, direct: boolean): TlsAdmission {
    if (direct && socket.alpnProtocol !== PG_ALPN_PROTOCOL) {
      // PostgreSQL 17 logs this as COMMERROR and closes: without ALPN a direct-TLS peer may not be a PostgreSQL client.
      return { ok: false, message: 'received direct SSL connection request without ALPN protocol negotiation extension' };
    }
    const mode = this.settings.clientCertificates;
    if (mode === 'none') return { ok: true, clientCn: undefined };
    const peer = socket.getPeerX509Certificate();
    if (peer === undefined) {
      return mode === 'require' ? { ok: false, message: 'client certificate required but none was presented' } : { ok: true, clientCn: undefined };
    }
    const clientCn = commonName(peer.subject);
    const error = verifyErrorOf(socket);
    if (error !== null) {
      return { ok: false, message: `client certificate${clientCn === undefined ? '' : ` (CN ${clientCn})`} refused: ${error.code ?? error.message}` };
    }
    return { ok: true, clientCn };
  }
}

function commonName(subject: string): string | undefined {
  const line = subject.split('\n').find((l) => l.startsWith('CN='));
  return line === undefined ? undefined : line.slice(3);
}

/** The chain check OpenSSL made during the handshake; Node exposes it on the TLSWrap handle (`ssl`) that tls.Server reads too. */
function verifyErrorOf(socket: TLSSocket): (Error & { code?: string }) | null {
  const handle = (socket as unknown as { ssl?: { verifyError(): (Error & { code?: string }) | undefined | null } }).ssl;
  if (handle === undefined) return Object.assign(new Error('the TLS connection is gone'), { code: 'SOCKET_CLOSED' });
  return handle.verifyError() ?? null;
}
