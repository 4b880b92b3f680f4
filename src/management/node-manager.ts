// Managed nodes: what pgfloat can do to a server itself (stop, start, rejoin as a standby), locally or through the operator's hooks.

import type { NodeConfig } from '../config/schema';

/** What managing a node needs from its configuration. */
export type ManagedNodeConfig = Pick<NodeConfig, 'name' | 'host' | 'port' | 'dataDir' | 'commands'>;
import type { Logger } from '../log';
import type { BackendNode } from '../proxy/session';
import type { PgBinaries } from '../sandbox/pg-binaries';
import { CommandNodeManager } from './command-hooks';
import { LocalServer } from './local-server';
import { Deadline } from './process';
import { rejoinLocal } from './rejoin';

export interface ManagementContext {
  /** PostgreSQL binaries for local nodes (pg_ctl, pg_rewind, pg_basebackup, postgres); undefined: local operations fail saying so. */
  binaries: PgBinaries | undefined;
  /** The admin/monitor role: CHECKPOINT on the primary, and watching the rejoined node's WAL receiver. */
  credentials: { user: string; password: string; database: string };
  /** The role pg_rewind, pg_basebackup and the standby's primary_conninfo use (management.replicationUser). */
  replication: { user: string; password: string };
  log: Logger;
  /** Default budget of a rejoin (management.rejoinTimeoutMs); 30 minutes when unset. */
  rejoinTimeoutMs?: number;
  /** Budget of a stop or a start, hooks included; 2 minutes when unset. */
  stopStartTimeoutMs?: number;
}

/** Receives one line per step, for the operator. */
export type Progress = (message: string) => void;

/** How a rejoin made the node a standby: pg_rewind, a fresh pg_basebackup, or the operator's rejoin hook. */
export type RejoinMethod = 'rewound' | 'rebuilt' | 'command';

export interface RejoinOptions {
  /** Skip pg_rewind and clone the primary with pg_basebackup (local), or PGFLOAT_REBUILD=1 (hooks). */
  rebuild: boolean;
  /** Overrides ManagementContext.rejoinTimeoutMs for this rejoin. */
  timeoutMs?: number;
}

export interface NodeManager {
  readonly node: string;
  readonly kind: 'local' | 'commands';
  /** Clean, fast shutdown (pg_ctl stop -m fast); resolves when stopped; fine if already stopped. */
  stop(progress: Progress): Promise<void>;
  /** Starts it with its own port; resolves when it accepts connections. */
  start(progress: Progress): Promise<void>;
  /**
   * Turns the node into a streaming standby of `primary` (stopping it first), and resolves once it
   * streams on the primary's current timeline. See rejoin.ts for a local node, command-hooks.ts for hooks.
   */
  rejoin(primary: BackendNode, options: RejoinOptions, progress: Progress): Promise<RejoinMethod>;
}

const DEFAULT_REJOIN_TIMEOUT_MS = 30 * 60_000;
const DEFAULT_STOP_START_TIMEOUT_MS = 2 * 60_000;

/**
 * The manager of a configured node, or undefined when it has neither dataDir nor commands.
 * Hooks win over dataDir when any is set: dataDir is then the path on the node's own host,
 * passed to them as PGFLOAT_DATA_DIR. `index` is the node's place in `nodes`, for messages
 * ("nodes[1].commands.rejoin is not set"). Keep one manager per node: each runs one operation
 * at a time and refuses a second one meanwhile.
 */
export function managerFor(node: ManagedNodeConfig, ctx: ManagementContext, index?: number): NodeManager | undefined {
  const configKey = index === undefined ? `nodes[name=${node.name}]` : `nodes[${index}]`;
  const { stop, start, rejoin } = node.commands;
  const stopStartMs = ctx.stopStartTimeoutMs ?? DEFAULT_STOP_START_TIMEOUT_MS;
  const rejoinMs = ctx.rejoinTimeoutMs ?? DEFAULT_REJOIN_TIMEOUT_MS;
  let inner: NodeManager;
  if (stop !== null || start !== null || rejoin !== null) {
    inner = new CommandNodeManager(node, ctx, configKey, stopStartMs, rejoinMs);
  } else if (node.dataDir !== null) {
    const server = new LocalServer({ name: node.name, host: node.host, port: node.port }, node.dataDir, ctx.binaries, `${configKey}.dataDir`);
    inner = new LocalNodeManager(server, ctx, stopStartMs, rejoinMs);
  } else {
    return undefined;
  }
  return new ExclusiveManager(inner, ctx.log);
}

class LocalNodeManager implements NodeManager {
  readonly kind = 'local' as const;

  constructor(
    private readonly server: LocalServer,
    private readonly ctx: ManagementContext,
    private readonly stopStartMs: number,
    private readonly rejoinMs: number,
  ) {}

  get node(): string {
    return this.server.name;
  }

  stop(progress: Progress): Promise<void> {
    return this.server.stop(progress, this.stopStartMs);
  }

  start(progress: Progress): Promise<void> {
    return this.server.start(progress, this.stopStartMs);
  }

  rejoin(primary: BackendNode, options: RejoinOptions, progress: Progress): Promise<RejoinMethod> {
    const deadline = new Deadline(options.timeoutMs ?? this.rejoinMs, `the rejoin of ${this.node}`);
    return rejoinLocal(this.server, primary, options.rebuild, this.ctx, deadline, progress);
  }
}

/** One operation at a time per node, each step logged, and errors that say which node and operation failed. */
class ExclusiveManager implements NodeManager {
  private running: string | undefined;

  constructor(
    private readonly inner: NodeManager,
    private readonly log: Logger,
  ) {}

  get node(): string {
    return this.inner.node;
  }

  get kind(): 'local' | 'commands' {
    return this.inner.kind;
  }

  stop(progress: Progress): Promise<void> {
    return this.exclusive('stop', progress, (p) => this.inner.stop(p));
  }

  start(progress: Progress): Promise<void> {
    return this.exclusive('start', progress, (p) => this.inner.start(p));
  }

  rejoin(primary: BackendNode, options: RejoinOptions, progress: Progress): Promise<RejoinMethod> {
    return this.exclusive('rejoin', progress, (p) => this.inner.rejoin(primary, options, p));
  }

  private async exclusive<T>(operation: string, progress: Progress, work: (progress: Progress) => Promise<T>): Promise<T> {
    if (this.running !== undefined) {
      throw new Error(`cannot ${operation} ${this.node}: a ${this.running} of ${this.node} is in progress`);
    }
    this.running = operation;
    const node = this.node;
    const report: Progress = (message) => {
      this.log.info({ node, operation }, message);
      try {
        progress(message);
      } catch {
        // the operator's display must not break the procedure
      }
    };
    try {
      return await work(report);
    } catch (err) {
      const message = (err as Error).message;
      this.log.error({ node, operation, err: message }, `${operation} of ${node} failed`);
      throw new Error(`${operation} of ${node} failed: ${message}`);
    } finally {
      this.running = undefined;
    }
  }
}
