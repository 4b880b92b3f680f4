// A configured node as the other layers take it: its address and its merged serverTls.

import type { NodeAddress } from '../cluster/node';
import { serverTlsPolicy } from '../postgres/server-tls';
import type { Config, NodeConfig } from './schema';

export function nodeAddress(config: Pick<Config, 'serverTls'>, node: NodeConfig): NodeAddress {
  return { name: node.name, host: node.host, port: node.port, tls: serverTlsPolicy(config, node) };
}
