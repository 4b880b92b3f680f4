// Finds the machine's PostgreSQL server binaries: PATH, then pg_config, then Debian's versioned directories.

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
  'or put the directory holding initdb on PATH.';

const SERVER_TOOLS = ['initdb', 'pg_ctl', 'postgres', 'pg_basebackup'];

function hasServerTools(dir: string): boolean {
  return SERVER_TOOLS.every((tool) => existsSync(join(dir, tool)));
}

/** PATH often holds symlinks to a few tools only (initdb, pg_ctl); the real directory has them all. */
function realBinDir(dir: string): string {
  try {
    return dirname(realpathSync(join(dir, 'initdb')));
  } catch {
    return dir;
  }
}

function majorVersionOf(binDir: string): number {
  const out = execFileSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' });
  const match = /(\d+)(?:\.\d+)?/.exec(out);
  if (!match) throw new Error(`cannot read the version from "${out.trim()}" (${binDir}/postgres --version)`);
  return Number(match[1]);
}

function candidates(): string[] {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  try {
    dirs.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config: fall through to the versioned directories
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    dirs.push(...versions.map((v) => join(debian, v, 'bin')));
  }
  return dirs;
}

export function findPgBinaries(): PgBinaries | undefined {
  const binDir = candidates().map(realBinDir).find(hasServerTools);
  if (binDir === undefined) return undefined;
  return { binDir, majorVersion: majorVersionOf(binDir), path: (tool) => join(binDir, tool) };
}
