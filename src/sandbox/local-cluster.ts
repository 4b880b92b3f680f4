// Creates and runs a real local PostgreSQL primary plus streaming standby (the sandbox and the tests use it).

import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Client } from 'pg';
import { findPgBinaries, INSTALL_HINT, type PgBinaries } from './pg-binaries';
import { unprivilegedUser, type RunAs } from './os-user';
import { runTool } from './run-tool';

export type AuthMethod = 'trust' | 'md5' | 'scram-sha-256';

export interface LocalClusterOptions {
  /** Data directories and logs live under it: <baseDir>/n1, <baseDir>/n1.log, ... */
  baseDir: string;
  ports: [number, number];
  names?: [string, string];
  binaries?: PgBinaries;
  superuser?: string;
  /** When set, the superuser gets this password and TCP connections use `authMethod`. */
  password?: string;
  authMethod?: AuthMethod;
  extraConf?: Record<string, string | number>;
  log?: (message: string) => void;
}

interface NodeContext {
  binaries: PgBinaries;
  user: RunAs | undefined;
  superuser: string;
  password: string | undefined;
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
    await this.pgCtl(['start', '-w', '-t', '60', '-l', this.logFile], 'start').catch((err: Error) => {
      throw new Error(`${err.message}\n--- ${this.logFile} (tail) ---\n${this.logTail()}`);
    });
  }

  async stop(mode: 'smart' | 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!(await this.isRunning())) return;
    this.ctx.log(`stopping ${this.name} (${mode})`);
    await this.pgCtl(['stop', '-w', '-t', '60', '-m', mode], 'stop');
  }

  async isRunning(): Promise<boolean> {
    if (!existsSync(join(this.dataDir, 'postmaster.pid'))) return false;
    try {
      await this.pgCtl(['status'], 'status');
      return true;
    } catch {
      return false;
    }
  }

  postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Signals the postmaster; tests use it to crash (SIGKILL) or hang (SIGSTOP) a server. */
  kill(signal: NodeJS.Signals): void {
    const pid = this.postmasterPid();
    if (pid === undefined) throw new Error(`${this.name} has no postmaster.pid in ${this.dataDir}`);
    process.kill(pid, signal);
  }

  connectionString(database = 'postgres'): string {
    const password = this.ctx.password === undefined ? '' : `:${encodeURIComponent(this.ctx.password)}`;
    return `postgres://${encodeURIComponent(this.ctx.superuser)}${password}@${this.host}:${this.port}/${database}`;
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  private pgCtl(args: string[], what: string): Promise<unknown> {
    return runTool(this.ctx.binaries.path('pg_ctl'), ['-D', this.dataDir, ...args], {
      user: this.ctx.user,
      timeoutMs: 90_000,
    }).catch((err: Error) => {
      throw new Error(`pg_ctl ${what} of ${this.name}: ${err.message}`);
    });
  }
}

export class LocalCluster {
  private constructor(readonly nodes: [LocalNode, LocalNode]) {}

  get primary(): LocalNode {
    return this.nodes[0];
  }

  get standby(): LocalNode {
    return this.nodes[1];
  }

  /** Creates the cluster when <baseDir>/<n1> does not exist, else reuses it; then starts both nodes. */
  static async open(opts: LocalClusterOptions): Promise<LocalCluster> {
    const binaries = opts.binaries ?? findPgBinaries();
    if (binaries === undefined) throw new Error(INSTALL_HINT);
    const user = unprivilegedUser();
    const [name1, name2] = opts.names ?? ['n1', 'n2'];
    const ctx: NodeContext = {
      binaries,
      user,
      superuser: opts.superuser ?? 'postgres',
      password: opts.password,
      log: opts.log ?? (() => undefined),
    };
    prepareBaseDir(opts.baseDir, user);
    const primary = new LocalNode(name1, opts.ports[0], join(opts.baseDir, name1), ctx);
    const standby = new LocalNode(name2, opts.ports[1], join(opts.baseDir, name2), ctx);
    const cluster = new LocalCluster([primary, standby]);
    if (existsSync(join(primary.dataDir, 'PG_VERSION')) && existsSync(join(standby.dataDir, 'PG_VERSION'))) {
      ctx.log(`reusing the cluster in ${opts.baseDir}`);
      await primary.start();
      await standby.start();
      return cluster;
    }
    // A half-made cluster from an interrupted first run is not worth repairing.
    rmSync(primary.dataDir, { recursive: true, force: true });
    rmSync(standby.dataDir, { recursive: true, force: true });
    try {
      await initPrimary(primary, opts, ctx);
      await primary.start();
      if (opts.password !== undefined) await setPassword(primary, opts, ctx);
      await cloneStandby(standby, primary, ctx);
      await standby.start();
    } catch (err) {
      await cluster.stop().catch(() => undefined);
      throw err;
    }
    return cluster;
  }

  async stop(): Promise<void> {
    // The standby first, so the primary's clean shutdown is not followed by a reconnect loop in its log.
    await this.standby.stop('fast').catch(() => this.standby.stop('immediate'));
    await this.primary.stop('fast').catch(() => this.primary.stop('immediate'));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop('immediate').catch(() => undefined)));
    rmSync(dirname(this.primary.dataDir), { recursive: true, force: true });
  }
}

function prepareBaseDir(baseDir: string, user: RunAs | undefined): void {
  mkdirSync(baseDir, { recursive: true });
  if (user === undefined) return;
  chownSync(baseDir, user.uid, user.gid);
  // The server user must be able to reach its data directory through every parent.
  for (let dir = dirname(baseDir); dir !== dirname(dir); dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) {
      throw new Error(`${dir} is not traversable by the unprivileged user ${user.name} that runs PostgreSQL (mode ${(mode & 0o777).toString(8)}); chmod o+x it`);
    }
  }
}

async function initPrimary(node: LocalNode, opts: LocalClusterOptions, ctx: NodeContext): Promise<void> {
  const baseDir = dirname(node.dataDir);
  const args = ['-D', node.dataDir, '-U', ctx.superuser, '-E', 'UTF8', '--locale=C', '--auth-local=trust', `--auth-host=${opts.authMethod ?? 'trust'}`];
  let pwfile: string | undefined;
  if (opts.password !== undefined) {
    pwfile = join(baseDir, '.pwfile');
    writeFileSync(pwfile, `${opts.password}\n`, { mode: 0o600 });
    if (ctx.user) chownSync(pwfile, ctx.user.uid, ctx.user.gid);
    args.push(`--pwfile=${pwfile}`);
  }
  ctx.log(`initdb ${node.name}`);
  try {
    await runTool(ctx.binaries.path('initdb'), args, { user: ctx.user });
  } finally {
    if (pwfile) unlinkSync(pwfile);
  }
  const settings: Record<string, string | number> = {
    listen_addresses: "'127.0.0.1'",
    port: node.port,
    // Everything connects over TCP; socket paths are length-limited and /var/run may not be writable.
    unix_socket_directories: "''",
    wal_level: 'replica',
    max_wal_senders: 10,
    hot_standby: 'on',
    // pg_rewind of a former primary needs hint bits WAL-logged.
    wal_log_hints: 'on',
    wal_keep_size: "'256MB'",
    max_connections: 200,
    logging_collector: 'off',
    ...opts.extraConf,
  };
  appendFileSync(join(node.dataDir, 'postgresql.conf'), `\n# pgfloat local cluster\n${Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`);
  chmodSync(node.dataDir, 0o700);
}

async function setPassword(primary: LocalNode, opts: LocalClusterOptions, ctx: NodeContext): Promise<void> {
  // initdb stores the password with the default (SCRAM) hash; md5 auth needs an md5 hash to test md5.
  const client = new Client({ connectionString: primary.connectionString() });
  await client.connect();
  try {
    await client.query(`SET password_encryption = '${opts.authMethod === 'md5' ? 'md5' : 'scram-sha-256'}'`);
    await client.query(`ALTER ROLE "${ctx.superuser}" PASSWORD '${opts.password!.replace(/'/g, "''")}'`);
  } finally {
    await client.end();
  }
}

async function cloneStandby(standby: LocalNode, primary: LocalNode, ctx: NodeContext): Promise<void> {
  ctx.log(`pg_basebackup ${standby.name} from ${primary.name}`);
  await runTool(
    ctx.binaries.path('pg_basebackup'),
    ['-D', standby.dataDir, '-h', primary.host, '-p', String(primary.port), '-U', ctx.superuser, '-R', '-X', 'stream', '-c', 'fast'],
    { user: ctx.user, env: ctx.password === undefined ? {} : { PGPASSWORD: ctx.password } },
  );
  // postgresql.auto.conf is read last, so this overrides the port copied from the primary.
  appendFileSync(join(standby.dataDir, 'postgresql.auto.conf'), `port = ${standby.port}\n`);
}
