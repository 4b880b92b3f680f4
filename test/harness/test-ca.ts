// A certificate authority made at test time with openssl: a CA, and certificates it signs for servers and clients.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Teardown } from './cluster';
import { runTool } from './clients';

export interface IssuedCertificate {
  cert: string;
  key: string;
}

export interface TestCa {
  /** The CA's certificate (PEM file): what a verifying side trusts. */
  ca: string;
  /** A certificate signed by this CA; `names` are DNS names and IP addresses for subjectAltName. */
  issue(file: string, commonName: string, names?: readonly string[]): Promise<IssuedCertificate>;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function openssl(args: readonly string[]): Promise<void> {
  const run = await runTool('openssl', args);
  if (run.code !== 0) throw new Error(`openssl ${args[0]} failed: ${run.stderr}`);
}

/** Files live in a directory readable by anyone (PostgreSQL's user reads them), removed at teardown. */
export async function makeTestCa(t: Teardown, name = 'pgfloat test CA'): Promise<TestCa> {
  const dir = mkdtempSync(join(tmpdir(), 'pgfloat-ca-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  await openssl([
    'req', '-x509', ...EC_KEY, '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  let serial = 0;
  return {
    ca,
    async issue(file, commonName, names = []) {
      const cert = join(dir, `${file}.crt`);
      const key = join(dir, `${file}.key`);
      const csr = join(dir, `${file}.csr`);
      const ext = join(dir, `${file}.ext`);
      const alt = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      writeFileSync(ext, `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n${alt ? `subjectAltName=${alt}\n` : ''}`);
      await openssl(['req', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${commonName}`]);
      await openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-set_serial', String(++serial + 1000), '-out', cert, '-days', '2', '-extfile', ext]);
      chmodSync(key, 0o600);
      return { cert, key };
    },
  };
}
