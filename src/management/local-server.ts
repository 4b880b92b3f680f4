// A PostgreSQL server whose data directory is on this host: pg_ctl, pg_rewind and pg_basebackup run as the directory's owner.

import { chownSync, closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { PgBinaries } from '../postgres/binaries';
import type { RunAs } from '../system/os-user';
import { describeExit, outputTail, runProcess, type ProcessResult } from '../system/process';
import type { Progress } from './types';
import type { NodeAddress } from '../cluster/node';
import { toolEnvironment } from '../system/environment';
import { libpqEnvironment, type ServerTlsPolicy } from '../postgres/server-tls';

export type ServerState = 'running' | 'stopped';

/** Seconds pg_ctl waits for a start or a stop. */
const PG_CTL_WAIT_S = 60;

export interface ToolCall {
  timeoutMs: number;
  /** Given to the tool as PGPASSWORD (never on its command line); empty: libpq's .pgpass and the like decide. */
  password?: string;
  /** The serverTls of the server the tool connects to (the primary, for pg_rewind and pg_basebackup), as libpq's PGSSL* variables. */
  tls?: ServerTlsPolicy;
}

export class LocalServer {
  readonly dataDir: string;
  /** Beside the data directory, not in it: pg_rewind and pg_basebackup replace the directory's contents. */
  readonly logFile: string;
  private knownOwner: RunAs | undefined | null = null;

  constructor(
    /** How pgfloat reaches the server; the port is also the one it is started on. */
    private readonly address: NodeAddress,
    dataDir: string,
    private readonly binaries: PgBinaries | undefined,
    /** The config key, for messages: "nodes[0].dataDir". */
    private readonly configKey: string,
  ) {
    // The tools run with cwd '/': a relative path would point elsewhere.
    this.dataDir = resolve(dataDir);
    this.logFile = `${this.dataDir}.log`;
  }

  get name(): string {
    return this.address.name;
  }

  get port(): number {
    return this.address.port;
  }

  nodeAddress(): NodeAddress {
    return { ...this.address };
  }

  /**
   * The user the tools run as: the data directory's owner, or its parent's while it does not exist
   * (during a rebuild). Undefined means ourselves. Remembered once read from the directory itself,
   * so a rebuild keeps the owner of the directory it replaces.
   */
  owner(): RunAs | undefined {
    if (this.knownOwner !== null) return this.knownOwner;
    const exists = existsSync(this.dataDir);
    const path = exists ? this.dataDir : dirname(this.dataDir);
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      throw new Error(`${this.configKey} is ${this.dataDir}, and neither it nor its parent can be read: ${(err as Error).message}`);
    }
    const us = process.getuid?.();
    let owner: RunAs | undefined;
    if (us === 0) {
      if (st.uid === 0) {
        throw new Error(
          `${path} (${this.configKey}) belongs to root, and PostgreSQL refuses to run as root: ` +
            `chown it to the user that runs ${this.name}'s server`,
        );
      }
      owner = { uid: st.uid, gid: st.gid, name: userName(st.uid) };
    } else if (us !== undefined && st.uid !== us) {
      throw new Error(
        `${path} (${this.configKey}) belongs to uid ${st.uid}, but pgfloat runs as uid ${us} and cannot act as another user: ` +
          'run pgfloat as that user, or as root',
      );
    }
    if (exists) this.knownOwner = owner;
    return owner;
  }

  /** Whether a postmaster runs on the data directory (pg_ctl status; a stale postmaster.pid after a crash is "stopped"). */
  async state(): Promise<ServerState> {
    const run = await this.runTool('pg_ctl', ['status', '-D', this.dataDir], { timeoutMs: 30_000 });
    // 0: running, 3: not running, 4: no (accessible) data directory.
    if (run.code === 0) return 'running';
    if (run.code === 3 || run.code === 4) return 'stopped';
    throw this.failure('pg_ctl status', run, 30_000);
  }

  /** A fast shutdown; an immediate one when that does not finish (pg_rewind then runs crash recovery itself). */
  async stop(progress: Progress, timeoutMs: number): Promise<void> {
    if ((await this.state()) === 'stopped') {
      progress(`${this.name} is not running`);
      return;
    }
    progress(`stopping ${this.name} (fast shutdown)`);
    const fast = await this.pgCtlStop('fast', timeoutMs);
    if (fast.code === 0 || (await this.state()) === 'stopped') return;
    progress(`fast shutdown of ${this.name} did not finish (${describeExit(fast, timeoutMs)}: ${lastLine(fast.output)}); trying an immediate shutdown`);
    const immediate = await this.pgCtlStop('immediate', timeoutMs);
    if (immediate.code === 0 || (await this.state()) === 'stopped') return;
    throw this.failure(`pg_ctl stop -m immediate of ${this.name}`, immediate, timeoutMs);
  }

  /**
   * Starts the server on its configured port (given on the command line, since the configuration
   * files may have been copied from another node) and waits until it accepts connections.
   */
  async start(progress: Progress, timeoutMs: number, what = `starting ${this.name} on port ${this.port}`): Promise<void> {
    if ((await this.state()) === 'running') {
      progress(`${this.name} is already running`);
      return;
    }
    progress(what);
    this.prepareLogFile();
    const waitS = Math.max(1, Math.min(PG_CTL_WAIT_S, Math.floor(timeoutMs / 1000)));
    const args = ['start', '-w', '-t', String(waitS), '-D', this.dataDir, '-l', this.logFile, '-o', `-p ${this.port}`];
    const run = await this.runTool('pg_ctl', args, { timeoutMs: waitS * 1000 + 10_000 });
    if (run.code !== 0) throw this.failure(`pg_ctl start of ${this.name}`, run, waitS * 1000, true);
  }

  /** Runs pg_rewind, pg_basebackup...; resolves with its output, rejects with its exit and output's tail. */
  async tool(tool: string, args: readonly string[], call: ToolCall): Promise<string> {
    const run = await this.runTool(tool, args, call);
    if (run.code !== 0) throw this.failure(tool, run, call.timeoutMs);
    return run.output;
  }

  /** The end of the server log, for error messages. */
  logTail(lines = 15): string {
    try {
      return outputTail(readFileSync(this.logFile, 'utf8'), lines);
    } catch {
      return `(no log at ${this.logFile})`;
    }
  }

  /** Files we (root) create in the data directory must belong to the server's user. */
  chownToOwner(path: string): void {
    const owner = this.owner();
    if (owner !== undefined) chownSync(path, owner.uid, owner.gid);
  }

  private pgCtlStop(mode: 'fast' | 'immediate', timeoutMs: number): Promise<ProcessResult> {
    const waitS = Math.max(1, Math.min(PG_CTL_WAIT_S, Math.floor(timeoutMs / 1000)));
    return this.runTool('pg_ctl', ['stop', '-w', '-t', String(waitS), '-m', mode, '-D', this.dataDir], { timeoutMs: waitS * 1000 + 10_000 });
  }

  /** The owner may not be allowed to create files beside the data directory; the file is the server's either way. */
  private prepareLogFile(): void {
    const owner = this.owner();
    if (owner === undefined) return;
    try {
      closeSync(openSync(this.logFile, 'a', 0o600));
      chownSync(this.logFile, owner.uid, owner.gid);
    } catch {
      // pg_ctl reports a log file it cannot open itself
    }
  }

  private runTool(tool: string, args: readonly string[], call: ToolCall): Promise<ProcessResult> {
    if (this.binaries === undefined) {
      throw new Error(
        `${this.name} is managed through ${this.configKey}, but no PostgreSQL binaries (pg_ctl, pg_rewind, pg_basebackup) were found: ` +
          'set management.binDir, or PGFLOAT_PG_BINDIR, to the directory holding them',
      );
    }
    const owner = this.owner();
    const env = toolEnvironment({
      // libpq reads .pgpass from HOME, and our own home may be unreadable to the owner.
      HOME: homeOf(owner) ?? process.env.HOME ?? dirname(this.dataDir),
      ...(call.password ? { PGPASSWORD: call.password } : {}),
      ...(call.tls !== undefined && libpqEnvironment(call.tls)),
    });
    return runProcess(this.binaries.path(tool), args, { user: owner, env, timeoutMs: call.timeoutMs });
  }

  private failure(what: string, run: ProcessResult, timeoutMs: number, withLog = false): Error {
    const log = withLog ? `\n--- last lines of ${this.logFile} ---\n${this.logTail()}` : '';
    return new Error(`${what} failed (${describeExit(run, timeoutMs)}):\n${outputTail(run.output)}${log}`);
  }
}

/** The last non-empty line of a tool's output: its error, usually. */
export function lastLine(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines[lines.length - 1] ?? '(no output)';
}

interface PasswdEntry {
  name: string;
  home: string;
}

function passwdEntry(uid: number): PasswdEntry | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const fields = line.split(':');
      if (fields.length >= 7 && Number(fields[2]) === uid) return { name: fields[0]!, home: fields[5]! };
    }
  } catch {
    // no /etc/passwd (or unreadable): names are for messages only
  }
  return undefined;
}

function userName(uid: number): string {
  return passwdEntry(uid)?.name ?? `uid ${uid}`;
}

function homeOf(owner: RunAs | undefined): string | undefined {
  if (owner === undefined) return undefined;
  const home = passwdEntry(owner.uid)?.home;
  return home !== undefined && home !== '' && existsSync(home) ? home : undefined;
}
