// A configured node as the other layers take it: its address and its merged serverTls.

import type { NodeAddress, ServerTlsPolicy } from '../cluster/node';
import type { Config, NodeConfig } from './schema';

/** The top-level serverTls with the node's own keys on top. */
export function serverTlsPolicy(config: Pick<Config, 'serverTls'>, node: Pick<NodeConfig, 'serverTls'>): ServerTlsPolicy {
  const own = node.serverTls ?? {};
  return {
    mode: own.mode ?? config.serverTls.mode,
    ca: own.ca !== undefined ? own.ca : config.serverTls.ca,
    cert: own.cert !== undefined ? own.cert : config.serverTls.cert,
    key: own.key !== undefined ? own.key : config.serverTls.key,
  };
}

export function nodeAddress(config: Pick<Config, 'serverTls'>, node: NodeConfig): NodeAddress {
  return { name: node.name, host: node.host, port: node.port, tls: serverTlsPolicy(config, node) };
}
