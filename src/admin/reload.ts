// The answer to a reload (SIGHUP, POST /reload, `pgfloat reload`), from what each relay loop reported.

import type { TlsReloadReport } from '../proxy/relay-plane';
import type { CertificateSummary } from '../proxy/tls';

export interface ReloadAnswer {
  /** True when every loop took the new files (or there is no client-facing TLS and nothing could fail). */
  reloaded: boolean;
  message: string;
  /** The client-facing certificate now served; null without `tls`, or when the loops disagree. */
  certificate: CertificateSummary | null;
  loops: TlsReloadReport[];
}

export function reloadAnswer(loops: TlsReloadReport[], clientTls: boolean): ReloadAnswer {
  const failed = loops.filter((l) => !l.ok);
  if (failed.length > 0) {
    const reasons = failed.map((l) => `${l.loop}: ${l.reason ?? 'unknown reason'}`).join('; ');
    return { reloaded: false, message: `TLS reload failed in ${failed.length} of ${loops.length} relay loops, which keep the previous certificate: ${reasons}`, certificate: null, loops };
  }
  if (!clientTls) return { reloaded: true, message: 'TLS files reloaded (server-side files only: tls is not configured)', certificate: null, loops };
  const fingerprints = new Set(loops.map((l) => l.certificate?.fingerprint256));
  // Files replaced again during the reload can leave loops on different certificates: said, not hidden.
  const certificate = fingerprints.size === 1 ? (loops[0]?.certificate ?? null) : null;
  const which = certificate === null ? 'the files changed during the reload: loops serve different certificates' : `serving ${certificate.subject} (serial ${certificate.serialNumber}, SHA-256 ${certificate.fingerprint256}, valid to ${certificate.validTo})`;
  return { reloaded: true, message: `TLS files reloaded in ${loops.length} relay loop${loops.length === 1 ? '' : 's'}: ${which}`, certificate, loops };
}
