#!/usr/bin/env node
// The pgfloat command line: `start` runs the proxy from a config file, `sandbox` runs the embedded default.

import { Command, Option } from 'commander';
import { ConfigError, loadConfigFile, redactConfig } from '../config/load';
import { createLogger } from '../log';
import { runUntilSignal } from './run-instance';
import { runSandbox } from './sandbox';
import { registerWalCommands } from './wal-commands';
import { CliError, fetchStatus, follow, formatStatus, operate, reload, type AdminTarget } from './admin-client';

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
    process.stdout.write(JSON.stringify(redactConfig(loadConfigFile(opts.config)), null, 2) + '\n');
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

const adminOption = (): Option =>
  new Option('--admin <url>', 'admin API of the pgfloat instance').default(process.env.PGFLOAT_ADMIN_URL ?? 'http://127.0.0.1:8008');
const target = (opts: { admin: string }): AdminTarget => ({ url: opts.admin, token: process.env.PGFLOAT_ADMIN_TOKEN || undefined });
const say = (message: string): void => void process.stdout.write(`${message}\n`);

program
  .command('status')
  .description('show the cluster as pgfloat sees it')
  .addOption(adminOption())
  .option('--json', 'print the raw JSON')
  .action(async (opts: { admin: string; json?: boolean }) => {
    const status = await fetchStatus(target(opts));
    process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  });

/** Starts a long operation and, unless --no-wait, prints its progress until it ends; the exit status says how. */
async function longOperation(opts: { admin: string; wait: boolean }, path: string, body: unknown): Promise<void> {
  const admin = target(opts);
  const { message, operation } = await operate(admin, path, body);
  say(message);
  if (!opts.wait || operation === undefined) return;
  say(await follow(admin, operation, say));
}

program
  .command('switchover')
  .description('planned switchover: hold new writers, drain the primary at transaction boundaries, promote the standby once it has everything, rejoin the old primary when managed')
  .addOption(adminOption())
  .option('--to <node>', 'the standby to promote (default: a healthy, streaming one)')
  .option('--force', 'switch even though logical replication slots on the primary would be lost')
  .option('--no-wait', 'return once the switchover has started')
  .action(async (opts: { admin: string; to?: string; force?: boolean; wait: boolean }) => {
    await longOperation(opts, '/switchover', { to: opts.to, force: opts.force === true });
  });

program
  .command('failover')
  .description('force a failover to a standby (token from PGFLOAT_ADMIN_TOKEN)')
  .addOption(adminOption())
  .option('--to <node>', 'the standby to promote (default: the one furthest ahead)')
  .option('--allow-data-loss', 'promote even past failover.maxLagBytes or with the primary position unknown')
  .option('--no-wait', 'return once the failover has started')
  .action(async (opts: { admin: string; to?: string; allowDataLoss?: boolean; wait: boolean }) => {
    await longOperation(opts, '/failover', { to: opts.to, allowDataLoss: opts.allowDataLoss === true });
  });

program
  .command('rejoin <node>')
  .description('turn NODE into a standby of the current primary (pg_rewind, or a new base backup), then unfence it; the node must be managed')
  .addOption(adminOption())
  .option('--rebuild', 'recreate it from a fresh pg_basebackup instead of rewinding')
  .option('--no-wait', 'return once the rejoin has started')
  .action(async (node: string, opts: { admin: string; rebuild?: boolean; wait: boolean }) => {
    await longOperation(opts, `/rejoin/${encodeURIComponent(node)}`, { rebuild: opts.rebuild === true });
  });

for (const [command, description] of [
  ['adopt', 'record NODE as the primary when several nodes claim it at first start (split brain)'],
  ['fence', 'fence NODE: drop its sessions and route nothing to it'],
  ['unfence', 'unfence NODE (after rejoining it as a standby by hand)'],
] as const) {
  program
    .command(`${command} <node>`)
    .description(`${description} (token from PGFLOAT_ADMIN_TOKEN)`)
    .addOption(adminOption())
    .action(async (node: string, opts: { admin: string }) => {
      say((await operate(target(opts), `/${command}/${encodeURIComponent(node)}`)).message);
    });
}

program
  .command('reload')
  .description('re-read the TLS certificate, key and CA files in every process, as SIGHUP does; open sessions keep theirs (token from PGFLOAT_ADMIN_TOKEN)')
  .addOption(adminOption())
  .action(async (opts: { admin: string }) => {
    say(await reload(target(opts)));
  });

registerWalCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CliError) {
    process.stderr.write(`pgfloat: ${err.message}\n`);
    process.exit(EXIT_FAILURE);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`pgfloat: bad configuration in ${err.source}:\n${err.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  process.stderr.write(`pgfloat: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(EXIT_FAILURE);
});
