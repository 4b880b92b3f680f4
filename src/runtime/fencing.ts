// Applies fencing.action to a node: nothing beyond the proxy, the `sql` fencing, or the operator's STONITH command.

import type { NodeAddress } from '../cluster/node';
import type { ServerAdmin } from '../postgres/server-admin';
import { hookEnvironment } from '../system/environment';
import { DEFAULT_SERVER_TLS, LIBPQ_TLS_VARIABLES, libpqEnvironment } from '../postgres/server-tls';
import { describeExit, outputTail, runProcess } from '../system/process';

export type FencingAction = 'none' | 'sql' | 'command';

export interface FencingOptions {
  action: FencingAction;
  command: string | null;
  timeoutMs: number;
}

export class Fencing {
  constructor(
    readonly options: FencingOptions,
    private readonly servers: ServerAdmin,
  ) {}

  /** Resolves to what was done, rejects with why it could not be (NodeUnreachableError when `sql` found no server). */
  async apply(node: NodeAddress): Promise<string> {
    const { action, timeoutMs } = this.options;
    switch (action) {
      case 'none':
        return 'fencing.action is none: the node is fenced at the proxy only';
      case 'sql':
        return this.servers.makeReadOnly(node, timeoutMs);
      case 'command':
        return this.runCommand(node);
    }
  }

  /** The command runs as pgfloat, from its working directory, like nodes[].commands. */
  private async runCommand(node: NodeAddress): Promise<string> {
    const { command, timeoutMs } = this.options;
    const env = hookEnvironment(
      // The node's serverTls as libpq reads it, for a psql or pg_ctl the command runs against the node.
      { ...libpqEnvironment(node.tls ?? DEFAULT_SERVER_TLS), PGFLOAT_NODE_NAME: node.name, PGFLOAT_NODE_HOST: node.host, PGFLOAT_NODE_PORT: String(node.port) },
      LIBPQ_TLS_VARIABLES,
    );
    const result = await runProcess('/bin/sh', ['-c', command!], { env, timeoutMs, cwd: process.cwd() }).catch((err: Error) => {
      throw new Error(`fencing command could not start: ${err.message}`);
    });
    const tail = outputTail(result.output, 5).replace(/\n/g, ' | ');
    if (result.code === 0 && !result.timedOut) return `fencing command succeeded${tail ? `: ${tail}` : ''}`;
    throw new Error(`fencing command failed (${describeExit(result, timeoutMs)})${tail ? `: ${tail}` : ''}`);
  }
}
