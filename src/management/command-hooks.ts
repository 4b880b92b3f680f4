// A node managed through the operator's shell hooks (nodes[].commands): stop, start and rejoin run with /bin/sh.

import type { NodeConfig } from '../config/schema';
import { hookEnvironment } from '../system/environment';
import { describeExit, outputTail, runProcess } from '../system/process';
import { checkpointPrimary, waitAccepting, waitForStreaming } from './replication';
import type { ManagementContext, NodeManager, Progress, RejoinMethod, RejoinOptions } from './types';
import type { NodeAddress } from '../cluster/node';
import { Deadline } from '../system/deadline';
import { policyOf } from '../postgres/connect';
import { LIBPQ_TLS_VARIABLES, libpqEnvironment } from '../postgres/server-tls';

type Hook = keyof NodeConfig['commands'];

export class CommandNodeManager implements NodeManager {
  readonly kind = 'commands' as const;

  constructor(
    private readonly config: Pick<NodeConfig, 'name' | 'host' | 'port' | 'dataDir' | 'commands'>,
    /** The node with its serverTls: how pgfloat's own SQL reaches it while it waits on the hooks. */
    private readonly nodeAddress: NodeAddress,
    private readonly ctx: ManagementContext,
    /** "nodes[1]", for messages. */
    private readonly configKey: string,
    private readonly hookTimeoutMs: number,
    private readonly rejoinTimeoutMs: number,
  ) {}

  get node(): string {
    return this.config.name;
  }

  async stop(progress: Progress): Promise<void> {
    const command = this.hook('stop');
    progress(`stopping ${this.node} with ${this.configKey}.commands.stop`);
    await this.run('stop', command, {}, this.nodeAddress, this.hookTimeoutMs, progress);
  }

  /** Runs the start hook, then waits (within the same time budget) until the server answers a query. */
  async start(progress: Progress): Promise<void> {
    const command = this.hook('start');
    const deadline = new Deadline(this.hookTimeoutMs, `starting ${this.node}`);
    progress(`starting ${this.node} with ${this.configKey}.commands.start`);
    await this.run('start', command, {}, this.nodeAddress, deadline.remaining('the start hook'), progress);
    progress(`waiting for ${this.node} to accept connections`);
    await waitAccepting(this.address(), this.ctx, deadline);
    progress(`${this.node} accepts connections`);
  }

  /**
   * The hook does the whole job (stop, pg_rewind or pg_basebackup, standby.signal, start); pgfloat
   * checkpoints the primary before it, so the hook's pg_rewind sees the new timeline, and afterwards
   * waits for the node to stream on that timeline, as for a local node.
   */
  async rejoin(primary: NodeAddress, options: RejoinOptions, progress: Progress): Promise<RejoinMethod> {
    const command = this.hook('rejoin');
    if (primary.name === this.node) throw new Error(`${this.node} cannot rejoin itself: name the current primary`);
    const deadline = new Deadline(options.timeoutMs ?? this.rejoinTimeoutMs, `the rejoin of ${this.node}`);
    const timeline = await checkpointPrimary(primary, this.ctx, deadline, progress, "so the rejoin hook's pg_rewind sees the new timeline");
    progress(`running ${this.configKey}.commands.rejoin for ${this.node} (primary ${primary.name} at ${primary.host}:${primary.port}${options.rebuild ? ', rebuild' : ''})`);
    await this.run(
      'rejoin',
      command,
      {
        PGFLOAT_PRIMARY_NAME: primary.name,
        PGFLOAT_PRIMARY_HOST: primary.host,
        PGFLOAT_PRIMARY_PORT: String(primary.port),
        PGFLOAT_REBUILD: options.rebuild ? '1' : '0',
        PGFLOAT_REPLICATION_USER: this.ctx.replication.user,
      },
      primary,
      deadline.remaining('the rejoin hook'),
      progress,
    );
    await waitForStreaming(this.address(), primary, timeline, this.ctx, deadline, progress);
    return 'command';
  }

  private hook(name: Hook): string {
    const command = this.config.commands[name];
    if (command === null) throw new Error(`${this.configKey}.commands.${name} is not set: pgfloat cannot ${name} ${this.node}`);
    return command;
  }

  private address(): NodeAddress {
    return this.nodeAddress;
  }

  /**
   * `server` is the one the hook's PostgreSQL tools would talk to (the node itself, or the primary
   * a rejoin follows): its serverTls is given as libpq's PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY.
   */
  private async run(name: Hook, command: string, extra: Record<string, string>, server: NodeAddress, timeoutMs: number, progress: Progress): Promise<void> {
    const env = hookEnvironment({
      ...libpqEnvironment(policyOf(server)),
      PGFLOAT_NODE_NAME: this.config.name,
      PGFLOAT_NODE_HOST: this.config.host,
      PGFLOAT_NODE_PORT: String(this.config.port),
      ...(this.config.dataDir !== null && { PGFLOAT_DATA_DIR: this.config.dataDir }),
      ...extra,
    }, LIBPQ_TLS_VARIABLES);
    const key = `${this.configKey}.commands.${name}`;
    // Hooks run as pgfloat itself, from its working directory, like fencing.command.
    const result = await runProcess('/bin/sh', ['-c', command], { env, timeoutMs, cwd: process.cwd() }).catch((err: Error) => {
      throw new Error(`${key} for ${this.node} could not start: ${err.message}`);
    });
    const tail = outputTail(result.output, 10);
    if (result.code !== 0 || result.timedOut) {
      throw new Error(`${key} failed for ${this.node} (${describeExit(result, timeoutMs)})${tail ? `:\n${tail}` : ' without output'}`);
    }
    progress(`${key} finished${tail ? `: ${outputTail(result.output, 3).replace(/\n/g, ' | ')}` : ''}`);
  }
}

