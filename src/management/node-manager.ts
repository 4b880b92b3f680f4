// Picks how each configured node is managed (locally through its data directory, or through the operator's hooks), one operation at a time.

import type { Config } from '../config/schema';
import type { Logger } from '../log';
import { findPgBinaries, pgBinariesAt } from '../postgres/binaries';
import { CommandNodeManager } from './command-hooks';
import { LocalServer } from './local-server';
import { rejoinLocal } from './rejoin';
import type { ManagedNodeConfig, ManagementContext, NodeManager, Progress, RejoinMethod, RejoinOptions } from './types';
import type { NodeAddress } from '../cluster/node';
import { Deadline } from '../system/deadline';
import { serverTlsPolicy } from '../config/nodes';
import { DEFAULT_SERVER_TLS } from '../postgres/server-tls';

/** A manager for every node the configuration lets pgfloat manage (nodes[].dataDir or nodes[].commands). */
export function managersFor(config: Config, log: Logger): Map<string, NodeManager> {
  const { monitor, management } = config;
  const managers = new Map<string, NodeManager>();
  const managed = config.nodes.some((n) => n.dataDir !== null || Object.values(n.commands).some((c) => c !== null));
  if (!managed) return managers;
  const ctx: ManagementContext = {
    // Only local nodes need them; a missing binDir is reported when such a node is operated on.
    binaries: management.binDir !== null ? pgBinariesAt(management.binDir) : findPgBinaries(),
    credentials: { user: monitor.user, password: monitor.password, database: monitor.database },
    replication: { user: management.replicationUser ?? monitor.user, password: management.replicationPassword },
    log,
    serverTls: config.serverTls,
    rejoinTimeoutMs: management.rejoinTimeoutMs,
  };
  config.nodes.forEach((node, index) => {
    const manager = managerFor(node, ctx, index);
    if (manager !== undefined) managers.set(node.name, manager);
  });
  return managers;
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
  const tls = serverTlsPolicy({ serverTls: ctx.serverTls ?? DEFAULT_SERVER_TLS }, { serverTls: node.serverTls ?? null });
  const address: NodeAddress = { name: node.name, host: node.host, port: node.port, tls };
  let inner: NodeManager;
  if (stop !== null || start !== null || rejoin !== null) {
    inner = new CommandNodeManager(node, address, ctx, configKey, stopStartMs, rejoinMs);
  } else if (node.dataDir !== null) {
    const server = new LocalServer(address, node.dataDir, ctx.binaries, `${configKey}.dataDir`);
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

  rejoin(primary: NodeAddress, options: RejoinOptions, progress: Progress): Promise<RejoinMethod> {
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

  rejoin(primary: NodeAddress, options: RejoinOptions, progress: Progress): Promise<RejoinMethod> {
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
