// Finds the machine's PostgreSQL server binaries: PGFLOAT_PG_BINDIR, else PATH, pg_config, Debian's versioned directories.

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

export interface PgBinaries {
  binDir: string;
  majorVersion: number;
  path(tool: string): string;
}

export const INSTALL_HINT =
  'PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, through pg_config, or under /usr/lib/postgresql/*/bin. ' +
  'Install them, e.g. `apt-get install postgresql` on Debian/Ubuntu, `dnf install postgresql-server` on Fedora/RHEL, `brew install postgresql` on macOS, ' +
  'or put the directory holding initdb on PATH (or name it in PGFLOAT_PG_BINDIR).';

const has = (dir: string, ...tools: string[]): boolean => tools.every((tool) => existsSync(join(dir, tool)));

/** PATH often holds symlinks to a few tools only (initdb, pg_ctl); the directory they point into has them all. */
function realBinDir(dir: string): string {
  try {
    return dirname(realpathSync(join(dir, 'initdb')));
  } catch {
    return dir;
  }
}

function* candidates(): Generator<string> {
  // An explicit choice (one of several installed versions, say) is the only candidate.
  const chosen = process.env.PGFLOAT_PG_BINDIR;
  if (chosen) {
    yield chosen;
    return;
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && has(dir, 'initdb', 'pg_ctl')) yield realBinDir(dir);
  }
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (has(dir, 'initdb')) yield dir;
  } catch {
    // no pg_config (or only the client libraries' one): the versioned directories decide
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) yield join(debian, v, 'bin');
  }
}

function majorVersionOf(binDir: string): number | undefined {
  try {
    const out = execFileSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const match = /\(PostgreSQL\)\s+(\d+)/.exec(out) ?? /(\d+)\.\d+/.exec(out);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The binaries in one given directory (management.binDir), or undefined when it lacks them. */
export function pgBinariesAt(binDir: string): PgBinaries | undefined {
  if (!has(binDir, 'pg_ctl', 'postgres')) return undefined;
  const majorVersion = majorVersionOf(binDir);
  return majorVersion === undefined ? undefined : { binDir, majorVersion, path: (tool) => join(binDir, tool) };
}

let found: PgBinaries | undefined;

export function findPgBinaries(): PgBinaries | undefined {
  if (found) return found;
  for (const binDir of candidates()) {
    if (!has(binDir, 'initdb', 'pg_ctl', 'postgres', 'pg_basebackup')) continue;
    const majorVersion = majorVersionOf(binDir);
    if (majorVersion === undefined) continue;
    return (found = { binDir, majorVersion, path: (tool) => join(binDir, tool) });
  }
  return undefined;
}
