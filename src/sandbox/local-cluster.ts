// Creates and runs a real local PostgreSQL primary plus streaming standby (the sandbox and the tests use it).

import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Client } from 'pg';
import { findPgBinaries, INSTALL_HINT, type PgBinaries } from '../postgres/binaries';
import { unprivilegedUser, type RunAs } from '../system/os-user';
import { toolEnvironment } from '../system/environment';
import { outputTail, runChecked } from '../system/process';

export type AuthMethod = 'trust' | 'md5' | 'scram-sha-256';
export type StopMode = 'smart' | 'fast' | 'immediate';

export interface LocalClusterOptions {
  /** Everything lives under it: <baseDir>/n1 and <baseDir>/n2 (data), <baseDir>/n1.log and <baseDir>/n2.log. */
  baseDir: string;
  /** Primary and standby TCP ports; both listen on 127.0.0.1 only. */
  ports: [number, number];
  names?: [string, string];
  binaries?: PgBinaries;
  superuser?: string;
  /** When set, the superuser gets this password and TCP connections use `authMethod`. */
  password?: string;
  authMethod?: AuthMethod;
  /**
   * Serve TLS with this certificate (copied beside the data directories for the server's user);
   * `ca` also verifies client certificates. `hostsslOnly` turns every TCP pg_hba line into
   * hostssl, so connections without TLS are rejected.
   */
  tls?: { cert: string; key: string; ca?: string; hostsslOnly?: boolean };
  /** Extra postgresql.conf settings for both nodes; strings are quoted for you (pass `'on'`, not `"'on'"`). */
  extraConf?: Record<string, string | number>;
  log?: (message: string) => void;
}

interface NodeContext {
  binaries: PgBinaries;
  user: RunAs | undefined;
  env: NodeJS.ProcessEnv;
  superuser: string;
  password: string | undefined;
  /** Added to connection strings: how a client reaches servers that insist on TLS. */
  sslParams: string;
  log: (message: string) => void;
}

export class LocalNode {
  readonly host = '127.0.0.1' as const;
  readonly logFile: string;

  constructor(
    readonly name: string,
    readonly port: number,
    readonly dataDir: string,
    private readonly ctx: NodeContext,
  ) {
    this.logFile = `${dataDir}.log`;
  }

  async start(): Promise<void> {
    if (await this.isRunning()) return;
    this.ctx.log(`starting ${this.name} on port ${this.port}`);
    // The port also goes on the command line: pg_rewind and pg_basebackup copy the config files of another node.
    await this.pgCtl(['start', '-w', '-t', '60', '-l', this.logFile, '-o', `-p ${this.port}`]).catch((err: Error) => {
      throw new Error(`${err.message}\n--- last lines of ${this.logFile} ---\n${this.logTail()}`);
    });
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!(await this.isRunning())) return;
    this.ctx.log(`stopping ${this.name} (${mode})`);
    // A postmaster frozen with SIGSTOP by a test would never act on the shutdown request.
    this.signal('SIGCONT');
    await this.pgCtl(['stop', '-w', '-t', '60', '-m', mode]);
  }

  async isRunning(): Promise<boolean> {
    if (this.postmasterPid() === undefined) return false;
    return this.pgCtl(['status']).then(
      () => true,
      () => false,
    );
  }

  postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Signals the postmaster; tests use it to crash (SIGKILL) or freeze (SIGSTOP) a server. */
  kill(signal: NodeJS.Signals): void {
    const pid = this.postmasterPid();
    if (pid === undefined) throw new Error(`${this.name} is not running (no postmaster.pid in ${this.dataDir})`);
    process.kill(pid, signal);
  }

  connectionString(database = 'postgres'): string {
    const password = this.ctx.password === undefined ? '' : `:${encodeURIComponent(this.ctx.password)}`;
    return `postgres://${encodeURIComponent(this.ctx.superuser)}${password}@${this.host}:${this.port}/${encodeURIComponent(database)}${this.ctx.sslParams}`;
  }

  /** The end of the server log, for error messages. */
  logTail(lines = 20): string {
    try {
      return outputTail(readFileSync(this.logFile, 'utf8'), lines);
    } catch {
      return '(no log file)';
    }
  }

  /** Best effort: the process may be gone already. */
  signal(signal: NodeJS.Signals): void {
    try {
      this.kill(signal);
    } catch {
      // not running
    }
  }

  private pgCtl(args: string[]): Promise<unknown> {
    return runChecked(this.ctx.binaries.path('pg_ctl'), ['-D', this.dataDir, ...args], {
      user: this.ctx.user,
      env: toolEnvironment(this.ctx.env),
      timeoutMs: 90_000,
    });
  }
}

export class LocalCluster {
  private constructor(
    readonly baseDir: string,
    readonly nodes: [LocalNode, LocalNode],
  ) {}

  /** The node created as the primary (n1); after a failover it may be a standby. */
  get primary(): LocalNode {
    return this.nodes[0];
  }

  /** The node created as the standby (n2). */
  get standby(): LocalNode {
    return this.nodes[1];
  }

  /** Creates the cluster when <baseDir>/n1 does not exist, else reuses the data directories; then starts both nodes. */
  static async open(opts: LocalClusterOptions): Promise<LocalCluster> {
    const binaries = opts.binaries ?? findPgBinaries();
    if (binaries === undefined) throw new Error(INSTALL_HINT);
    const user = unprivilegedUser();
    // The tools run with cwd '/', so relative paths would point elsewhere.
    const baseDir = resolve(opts.baseDir);
    const [name1, name2] = opts.names ?? ['n1', 'n2'];
    const ctx: NodeContext = {
      binaries,
      user,
      // The user's real home may be missing or unreadable; libpq and psql look there for .pgpass and .psqlrc.
      env: { HOME: baseDir },
      superuser: opts.superuser ?? 'postgres',
      password: opts.password,
      sslParams: opts.tls === undefined ? '' : opts.tls.ca !== undefined ? `?sslmode=verify-full&sslrootcert=${encodeURIComponent(opts.tls.ca)}` : '?sslmode=require',
      log: opts.log ?? (() => undefined),
    };
    prepareBaseDir(baseDir, user);
    const primary = new LocalNode(name1, opts.ports[0], join(baseDir, name1), ctx);
    const standby = new LocalNode(name2, opts.ports[1], join(baseDir, name2), ctx);
    const cluster = new LocalCluster(baseDir, [primary, standby]);
    const reuse = existsSync(join(primary.dataDir, 'PG_VERSION'));
    try {
      if (reuse) {
        ctx.log(`reusing the cluster in ${baseDir}`);
        await primary.start();
      } else {
        // Leftovers of an interrupted first run hold no data worth keeping.
        rmSync(primary.dataDir, { recursive: true, force: true });
        rmSync(standby.dataDir, { recursive: true, force: true });
        await initPrimary(primary, opts, ctx);
        await primary.start();
        if (opts.password !== undefined && opts.authMethod === 'md5') await rehashPassword(primary, ctx);
      }
      if (!existsSync(join(standby.dataDir, 'PG_VERSION'))) {
        rmSync(standby.dataDir, { recursive: true, force: true });
        await cloneStandby(standby, primary, ctx);
      }
      await standby.start();
    } catch (err) {
      await cluster.stop().catch(() => undefined);
      if (reuse) (err as Error).message += `\n(to start over, delete ${baseDir})`;
      throw err;
    }
    return cluster;
  }

  async stop(): Promise<void> {
    // The standby first, so it does not fill its log with reconnect attempts to a stopped primary.
    for (const node of [this.standby, this.primary]) {
      await node.stop('fast').catch(() => node.stop('immediate'));
    }
  }

  async destroy(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        await node.stop('immediate').catch(() => undefined);
        // Whatever the stop did, no server may outlive its deleted data directory.
        if (await node.isRunning()) node.signal('SIGKILL');
      }),
    );
    rmSync(this.baseDir, { recursive: true, force: true });
  }
}

/** Creates baseDir owned by the server user, after checking that user can reach it through every existing parent. */
function prepareBaseDir(baseDir: string, user: RunAs | undefined): void {
  const missing: string[] = [];
  for (let dir = baseDir; !existsSync(dir); dir = dirname(dir)) missing.unshift(dir);
  if (user !== undefined) {
    for (let dir = dirname(missing[0] ?? baseDir); dir !== dirname(dir); dir = dirname(dir)) {
      const st = statSync(dir);
      const x = st.mode & 0o001 || (st.uid === user.uid && st.mode & 0o100) || (st.gid === user.gid && st.mode & 0o010);
      if (!x) {
        throw new Error(
          `${dir} is not traversable by the user ${user.name} (uid ${user.uid}) that runs PostgreSQL ` +
            `(mode ${(st.mode & 0o777).toString(8)}); run \`chmod o+x ${dir}\` or choose another directory`,
        );
      }
    }
  }
  for (const dir of missing) {
    mkdirSync(dir, { recursive: true });
    // A restrictive umask must not lock the server user (or anyone reading logs) out of what we created.
    chmodSync(dir, 0o755);
  }
  if (user !== undefined) for (const dir of new Set([...missing, baseDir])) chownSync(dir, user.uid, user.gid);
}

const quote = (v: string | number): string => (typeof v === 'number' ? String(v) : `'${v.replace(/'/g, "''")}'`);

function confBlock(title: string, settings: Record<string, string | number>): string {
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${quote(v)}`);
  return `\n# ${title}\n${lines.join('\n')}\n`;
}

/** The socket path must fit in sun_path (~108 bytes); everything uses TCP, so a long baseDir goes without one. */
function socketDir(baseDir: string, user: RunAs | undefined): string {
  const dir = join(baseDir, 'sock');
  if (Buffer.byteLength(`${dir}/.s.PGSQL.65535`) >= 100) return '';
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (user) chownSync(dir, user.uid, user.gid);
  return dir;
}

async function initPrimary(node: LocalNode, opts: LocalClusterOptions, ctx: NodeContext): Promise<void> {
  const baseDir = dirname(node.dataDir);
  const authMethod = opts.authMethod ?? 'trust';
  const args = ['-D', node.dataDir, '-U', ctx.superuser, '-E', 'UTF8', '--locale=C', '--auth-local=trust', `--auth-host=${authMethod}`];
  let pwfile: string | undefined;
  if (opts.password !== undefined) {
    pwfile = join(baseDir, '.pwfile');
    writeFileSync(pwfile, `${opts.password}\n`, { mode: 0o600 });
    if (ctx.user) chownSync(pwfile, ctx.user.uid, ctx.user.gid);
    args.push(`--pwfile=${pwfile}`);
  }
  ctx.log(`initdb ${node.name}`);
  try {
    await runChecked(ctx.binaries.path('initdb'), args, { user: ctx.user, env: toolEnvironment(ctx.env), timeoutMs: 120_000 });
  } finally {
    if (pwfile) unlinkSync(pwfile);
  }
  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    port: node.port,
    unix_socket_directories: socketDir(baseDir, ctx.user),
    cluster_name: node.name,
    wal_level: 'replica',
    max_wal_senders: 10,
    hot_standby: 'on',
    // pg_rewind of a former primary needs hint-bit changes in the WAL.
    wal_log_hints: 'on',
    wal_keep_size: '256MB',
    // The primary pings an idle standby every half of this, so the standby's last message from
    // its primary stays fresh: what pgfloat's witness rule (failover.standbyConfirmationMs) reads.
    wal_sender_timeout: '3s',
    max_connections: 200,
    logging_collector: 'off',
    ...(opts.password !== undefined && { password_encryption: authMethod === 'md5' ? 'md5' : 'scram-sha-256' }),
    ...(opts.tls !== undefined && serverTlsSettings(baseDir, opts.tls, ctx.user)),
    ...opts.extraConf,
  };
  appendFileSync(join(node.dataDir, 'postgresql.conf'), confBlock('pgfloat local cluster', settings));
  if (opts.tls?.hostsslOnly) {
    const hba = join(node.dataDir, 'pg_hba.conf');
    writeFileSync(hba, readFileSync(hba, 'utf8').replace(/^host(\s)/gm, 'hostssl$1'));
  }
  // initdb's host lines (127.0.0.1/32 and ::1/128, for all databases and for replication) already use authMethod.
  chmodSync(node.dataDir, 0o700);
}

/** The server reads its key only if its own user owns it with mode 0600; both nodes share the copies. */
function serverTlsSettings(baseDir: string, tls: NonNullable<LocalClusterOptions['tls']>, user: RunAs | undefined): Record<string, string> {
  const dir = join(baseDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const copy = (from: string, name: string, mode: number): string => {
    const to = join(dir, name);
    writeFileSync(to, readFileSync(from), { mode });
    if (user) chownSync(to, user.uid, user.gid);
    return to;
  };
  if (user) chownSync(dir, user.uid, user.gid);
  return {
    ssl: 'on',
    ssl_cert_file: copy(tls.cert, 'server.crt', 0o644),
    ssl_key_file: copy(tls.key, 'server.key', 0o600),
    ...(tls.ca !== undefined && { ssl_ca_file: copy(tls.ca, 'ca.crt', 0o644) }),
  };
}

/** initdb stored a SCRAM hash; md5 clients would then be made to use SCRAM, so store an md5 hash instead. */
async function rehashPassword(primary: LocalNode, ctx: NodeContext): Promise<void> {
  const client = new Client({ connectionString: primary.connectionString() });
  await client.connect();
  try {
    await client.query(`ALTER ROLE ${client.escapeIdentifier(ctx.superuser)} PASSWORD ${client.escapeLiteral(ctx.password!)}`);
  } finally {
    await client.end();
  }
}

async function cloneStandby(standby: LocalNode, primary: LocalNode, ctx: NodeContext): Promise<void> {
  ctx.log(`pg_basebackup ${standby.name} from ${primary.name}`);
  await runChecked(
    ctx.binaries.path('pg_basebackup'),
    ['-D', standby.dataDir, '-h', primary.host, '-p', String(primary.port), '-U', ctx.superuser, '-R', '-X', 'stream', '-c', 'fast'],
    { user: ctx.user, env: toolEnvironment({ ...ctx.env, ...(ctx.password !== undefined && { PGPASSWORD: ctx.password }) }), timeoutMs: 300_000 },
  );
  // postgresql.auto.conf is read last, so these override the primary's values copied with postgresql.conf.
  appendFileSync(join(standby.dataDir, 'postgresql.auto.conf'), confBlock('pgfloat local cluster', { port: standby.port, cluster_name: standby.name }));
  chmodSync(standby.dataDir, 0o700);
}
