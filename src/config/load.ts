// Reads a YAML config file, validates it and reports the first problems by key path.

import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { parseDocument } from 'yaml';
import type { ZodError } from 'zod';
import type { ListenAddress } from './address';
import { configSchema, type Config } from './schema';

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly source: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file: ${(err as Error).message}`, file);
  }
  const config = parseConfigText(text, file, env);
  checkServerTlsFiles(config, file);
  return config;
}

/**
 * serverTls files are read on the first connection to a node, which may be long after startup
 * (or from a failover): a missing or unreadable file, or PEM that does not load, stops pgfloat now,
 * naming the key. Only pgfloat's own reading is checked: the tools and a standby's WAL receiver
 * read them as the data directory's owner.
 */
export function checkServerTlsFiles(config: Config, source: string): void {
  const sections: Array<[string, Partial<Record<'ca' | 'cert' | 'key', string | null>>]> = [
    ['serverTls', config.serverTls],
    ...config.nodes.map((n, i): [string, Partial<Record<'ca' | 'cert' | 'key', string | null>>] => [`nodes[${i}].serverTls`, n.serverTls ?? {}]),
  ];
  for (const [key, section] of sections) {
    const contents: Partial<Record<'ca' | 'cert' | 'key', Buffer>> = {};
    for (const kind of ['ca', 'cert', 'key'] as const) {
      const path = section[kind];
      if (path === undefined || path === null) continue;
      try {
        contents[kind] = readFileSync(path);
      } catch (err) {
        throw new ConfigError(`${key}.${kind}: cannot read ${path}: ${(err as Error).message}`, source);
      }
    }
    try {
      // What tls.connect will do with them: unparsable PEM, or a key that is not the certificate's, fails here.
      createSecureContext(contents);
    } catch (err) {
      const which = Object.keys(contents).map((k) => `${key}.${k}`).join(', ');
      throw new ConfigError(`${which}: not usable for TLS: ${(err as Error).message}`, source);
    }
  }
}

export function parseConfigText(text: string, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(`invalid YAML: ${document.errors.map((e) => e.message).join('; ')}`, source);
  }
  return parseConfigObject(document.toJS() ?? {}, source, env);
}

export function parseConfigObject(value: unknown, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const result = configSchema.safeParse(value);
  if (!result.success) throw new ConfigError(formatIssues(result.error), source);
  const config = result.data;
  const envPassword = env.PGFLOAT_MONITOR_PASSWORD;
  if (envPassword !== undefined && config.monitor.password === '') config.monitor.password = envPassword;
  if (config.management.replicationPassword === '') {
    config.management.replicationPassword = env.PGFLOAT_REPLICATION_PASSWORD || config.monitor.password;
  }
  if (config.state.etcd !== null && config.state.etcd.password === '') config.state.etcd.password = env.PGFLOAT_ETCD_PASSWORD ?? '';
  const envToken = env.PGFLOAT_ADMIN_TOKEN;
  if (config.admin.token === null && envToken) {
    if (envToken.length < 16) throw new ConfigError('PGFLOAT_ADMIN_TOKEN (admin.token): use at least 16 characters', source);
    config.admin.token = envToken;
  }
  if (config.state.store === 'etcd' && !config.failover.enabled) {
    throw new ConfigError('state.store: "etcd" needs failover.enabled: true (the instances agree through the failover core)', source);
  }
  checkListenersDiffer(config, source);
  return config;
}

/** Two listeners on one port collide when their hosts are equal or either is a wildcard. */
function checkListenersDiffer(config: Config, source: string): void {
  const listeners: Array<[string, ListenAddress | null]> = [
    ['listen.readWrite', config.listen.readWrite],
    ['listen.readOnly', config.listen.readOnly],
    ['admin.listen', config.admin.listen],
  ];
  const wildcard = (host: string): boolean => host === '0.0.0.0' || host === '::' || host === '';
  for (let i = 0; i < listeners.length; i++) {
    for (let j = 0; j < i; j++) {
      const [key, a] = listeners[i]!;
      const [otherKey, b] = listeners[j]!;
      if (!a || !b || a.port === 0 || a.port !== b.port) continue;
      if (a.host === b.host || wildcard(a.host) || wildcard(b.host)) {
        throw new ConfigError(`${key}: port ${a.port} is already used by ${otherKey}`, source);
      }
    }
  }
}

function formatIssues(error: ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const key = formatPath(issue.path);
      if (issue.code === 'unrecognized_keys') {
        const keys = issue.keys.map((k) => (key ? `${key}.${k}` : k));
        return `${keys.join(', ')}: unknown key${keys.length > 1 ? 's' : ''}`;
      }
      return `${key || '(root)'}: ${issue.message}`;
    })
    .join('\n');
}

function formatPath(path: ReadonlyArray<string | number>): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${part}` : part), '');
}

/** The config as it may be shown (check-config, logs): every secret replaced by whether it is set. */
export function redactConfig(config: Config): Config {
  const hidden = (secret: string): string => (secret ? '[set]' : '');
  return {
    ...config,
    monitor: { ...config.monitor, password: hidden(config.monitor.password) },
    management: { ...config.management, replicationPassword: hidden(config.management.replicationPassword) },
    admin: { ...config.admin, token: config.admin.token ? '[set]' : null },
    state: { ...config.state, etcd: config.state.etcd && { ...config.state.etcd, password: hidden(config.state.etcd.password) } },
  };
}
