// Reads a YAML config file, validates it and reports the first problems by key path.

import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { ZodError } from 'zod';
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
  return parseConfigText(text, file, env);
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
  checkListenersDiffer(config, source);
  return config;
}

function checkListenersDiffer(config: Config, source: string): void {
  const { readWrite, readOnly } = config.listen;
  if (readOnly && readOnly.port !== 0 && readOnly.port === readWrite.port && readOnly.host === readWrite.host) {
    throw new ConfigError('listen.readOnly: must differ from listen.readWrite', source);
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
