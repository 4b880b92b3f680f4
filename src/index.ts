// What a Node program may use to run pgfloat inside itself (the integration tests do): the instance, its configuration, its logger.

export { Pgfloat } from './runtime/pgfloat';
export { ConfigError, loadConfigFile, parseConfigObject, parseConfigText, redactConfig } from './config/load';
export type { Config, ConfigInput } from './config/schema';
export type { PgfloatStatus } from './admin/status';
export { createLogger, silentLogger, type Logger } from './log';
