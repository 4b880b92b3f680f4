#!/usr/bin/env node
// The pgfloat command line: `start` runs the proxy from a config file, `sandbox` runs the embedded default.

import { Command, Option } from 'commander';
import { ConfigError, loadConfigFile } from '../config/load';
import { createLogger } from '../log';
import { runUntilSignal } from './run-instance';
import { runSandbox } from './sandbox';

/** Exit statuses: 2 for bad configuration or usage, 1 for anything that failed at run time. */
export const EXIT_CONFIG = 2;
export const EXIT_FAILURE = 1;

const program = new Command();
program
  .name('pgfloat')
  .description('PostgreSQL wire-protocol proxy that replaces the floating IP in front of a primary/standby pair')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_CONFIG))
  .showHelpAfterError();

program
  .command('start')
  .description('run the proxy from a YAML configuration file')
  .requiredOption('-c, --config <file>', 'configuration file')
  .addOption(new Option('--log-level <level>', 'overrides log.level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']))
  .action(async (opts: { config: string; logLevel?: string }) => {
    const config = loadConfigFile(opts.config);
    const log = createLogger(opts.logLevel ?? config.log.level);
    await runUntilSignal(config, log);
  });

program
  .command('check-config')
  .description('validate a configuration file and print it with every default filled in')
  .requiredOption('-c, --config <file>', 'configuration file')
  .action((opts: { config: string }) => {
    const config = loadConfigFile(opts.config);
    const shown = { ...config, monitor: { ...config.monitor, password: config.monitor.password ? '[set]' : '' } };
    process.stdout.write(JSON.stringify(shown, null, 2) + '\n');
  });

program
  .command('sandbox')
  .description('create (or reuse) a local primary and streaming standby and run pgfloat in front of them')
  .option('--dir <dir>', 'where the sandbox lives', './.pgfloat/sandbox')
  .option('--port <port>', 'read-write port; read-only is the next one, admin is 8008', (v) => Number(v), 6432)
  .option('--node-port <port>', 'first PostgreSQL port; the standby uses the next one', (v) => Number(v), 15432)
  .option('--admin-port <port>', 'admin API port', (v) => Number(v), 8008)
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'))
  .action(async (opts: { dir: string; port: number; nodePort: number; adminPort: number; logLevel: string }) => {
    await runSandbox(opts);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`pgfloat: bad configuration in ${err.source}:\n${err.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  process.stderr.write(`pgfloat: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(EXIT_FAILURE);
});
