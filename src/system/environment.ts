// The environments pgfloat gives the processes it runs: PostgreSQL tools, and operators' commands.

/** Variables pgfloat itself reads (its settings and secrets); prefixes are matched as written. */
const PGFLOAT_OWN = 'PGFLOAT_';

/**
 * For PostgreSQL tools (initdb, pg_ctl, pg_rewind, pg_basebackup): the caller's libpq settings
 * (PGSERVICE, PGSSLMODE, PGPASSWORD...) must not redirect or break them, and NODE_OPTIONS (a test
 * runner's hooks, say) would follow a server into every archive_command it runs.
 */
export function toolEnvironment(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, ...extra };
}

/**
 * For operators' commands (fencing.command, nodes[].commands): pgfloat's environment without its
 * `notInherited` variables (its PGSSL*, which would mix with the server's) and without its
 * own PGFLOAT_* variables, which hold its secrets (PGFLOAT_MONITOR_PASSWORD, PGFLOAT_ETCD_PASSWORD,
 * PGFLOAT_ADMIN_TOKEN...) and could hold stale copies of the variables a command is given; then
 * the command's own variables.
 */
export function hookEnvironment(variables: Record<string, string>, notInherited: readonly string[] = []): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith(PGFLOAT_OWN) && !notInherited.includes(k)) env[k] = v;
  return { ...env, ...variables };
}
