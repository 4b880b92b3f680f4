// The rejoin of a local managed node as a standby of the current primary: stop, pg_rewind (else pg_basebackup), reconfigure, start, wait for streaming.

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lastLine, type LocalServer } from './local-server';
import { checkpointPrimary, verifyPrimary, waitForStreaming } from './replication';
import type { ManagementContext, Progress } from './types';
import type { NodeAddress } from '../cluster/node';
import type { Deadline } from '../system/deadline';
import { policyOf } from '../postgres/connect';
import { libpqConninfo } from '../postgres/server-tls';

export type LocalRejoinMethod = 'rewound' | 'rebuilt';

/** libpq's wording when the source server cannot be reached or refuses the role (wrong password, no such role, pg_hba). */
const CONNECTION_FAILURE = /connection to server .* failed|could not connect to server/i;

/** Where a rebuild moves the data directory it replaces; the previous one there is deleted first. */
export const OLD_DATA_DIR_SUFFIX = '.pgfloat-old';

/**
 * Turns `server` into a streaming standby of `primary`. pg_rewind first, unless `rebuild`;
 * when it fails (no wal_log_hints or checksums, WAL it needs already recycled on the primary,
 * a damaged or missing data directory...), a fresh pg_basebackup. Resolves once the node
 * streams on the primary's current timeline.
 */
export async function rejoinLocal(
  server: LocalServer,
  primary: NodeAddress,
  rebuild: boolean,
  ctx: ManagementContext,
  deadline: Deadline,
  progress: Progress,
): Promise<LocalRejoinMethod> {
  if (primary.name === server.name) throw new Error(`${server.name} cannot rejoin itself: name the current primary`);
  // The owner is read now, from the directory itself, before a rebuild moves it away.
  server.owner();
  // Nothing is done to the node unless the primary is there to follow.
  await verifyPrimary(primary, ctx, deadline);

  // A crashed server is fine too: pg_rewind (PostgreSQL 13+) runs its crash recovery itself.
  await server.stop(progress, deadline.remaining(`stopping ${server.name}`));
  const timeline = await checkpointPrimary(primary, ctx, deadline, progress, 'so pg_rewind sees the new timeline');

  let method: LocalRejoinMethod | undefined;
  if (rebuild) {
    progress(`rebuild requested: recreating ${server.name} from pg_basebackup`);
  } else if (!existsSync(join(server.dataDir, 'PG_VERSION'))) {
    progress(`no data directory at ${server.dataDir}; recreating ${server.name} from pg_basebackup`);
  } else {
    progress(`pg_rewind of ${server.name} from ${primary.name} (${primary.host}:${primary.port}, sslmode ${policyOf(primary).mode})`);
    try {
      const output = await server.tool(
        'pg_rewind',
        [
          `--target-pgdata=${server.dataDir}`,
          `--source-server=${conninfo({ host: primary.host, port: String(primary.port), user: ctx.replication.user, dbname: ctx.credentials.database, ...libpqConninfo(policyOf(primary)) })}`,
          '--write-recovery-conf',
          '--progress',
        ],
        { timeoutMs: deadline.remaining(`pg_rewind of ${server.name}`), password: ctx.replication.password, tls: policyOf(primary) },
      );
      progress(`pg_rewind of ${server.name} done: ${rewindSummary(output)}`);
      method = 'rewound';
    } catch (err) {
      const reason = rewindFailure((err as Error).message);
      if (deadline.expired()) throw new Error(`pg_rewind of ${server.name} did not finish in time (${reason}); ${server.name} is left stopped`);
      // pg_basebackup would fail the same way, after moving the data directory aside for nothing.
      if (CONNECTION_FAILURE.test(reason)) {
        throw new Error(`pg_rewind could not connect to ${primary.name} as ${ctx.replication.user}: ${reason}; ${server.name} is left stopped, its data directory untouched`);
      }
      progress(`pg_rewind failed: ${reason}; recreating ${server.name} from pg_basebackup`);
    }
  }
  if (method === undefined) {
    await basebackup(server, primary, ctx, deadline, progress);
    method = 'rebuilt';
  }

  configureStandby(server, primary, ctx, progress);
  try {
    await server.start(progress, deadline.remaining(`starting ${server.name}`), `starting ${server.name} as a standby of ${primary.name} on port ${server.port}`);
  } catch (err) {
    // pg_ctl gives up after its wait, but a standby with much WAL to replay keeps starting.
    if ((await server.state().catch(() => 'stopped')) !== 'running') throw err;
    progress(`${server.name} is still starting up: ${lastLine((err as Error).message)}`);
  }
  await waitForStreaming(server.nodeAddress(), primary, timeline, ctx, deadline, progress, {
    whyDead: async () => ((await server.state()) === 'stopped' ? 'its postmaster is not running' : undefined),
    diagnostics: () => `--- last lines of ${server.logFile} ---\n${server.logTail()}`,
  });
  return method;
}

/** Moves the data directory aside (one old copy kept) and clones the primary into a fresh one. */
async function basebackup(server: LocalServer, primary: NodeAddress, ctx: ManagementContext, deadline: Deadline, progress: Progress): Promise<void> {
  const owner = server.owner();
  const old = `${server.dataDir}${OLD_DATA_DIR_SUFFIX}`;
  if (existsSync(server.dataDir)) {
    if (existsSync(old)) {
      progress(`removing the previous ${old}`);
      rmSync(old, { recursive: true, force: true });
    }
    progress(`moving ${server.dataDir} aside to ${old}`);
    renameSync(server.dataDir, old);
  }
  // Created here, empty, with the owner and mode PostgreSQL wants: the owner may not be allowed to create it in its parent.
  mkdirSync(server.dataDir, { mode: 0o700 });
  server.chownToOwner(server.dataDir);
  progress(`pg_basebackup of ${server.name} from ${primary.name} (${primary.host}:${primary.port}, sslmode ${policyOf(primary).mode}) as ${ctx.replication.user}`);
  try {
    await server.tool(
      'pg_basebackup',
      ['-D', server.dataDir, '-h', primary.host, '-p', String(primary.port), '-U', ctx.replication.user, '-R', '-X', 'stream', '-c', 'fast', '--no-password'],
      { timeoutMs: deadline.remaining(`pg_basebackup of ${server.name}`), password: ctx.replication.password, tls: policyOf(primary) },
    );
  } catch (err) {
    const kept = existsSync(old) ? `; the previous data directory is at ${old}` : '';
    throw new Error(`pg_basebackup of ${server.name} from ${primary.name} failed${kept}: ${(err as Error).message}`);
  }
  progress(`pg_basebackup of ${server.name} done${owner ? ` (files owned by ${owner.name})` : ''}`);
}

/**
 * pg_rewind and pg_basebackup copied the primary's configuration files: its port, cluster_name
 * and primary_conninfo (pointing elsewhere, or nowhere) must not win. postgresql.auto.conf is
 * read last, so settings there override postgresql.conf. Everything else copied is left as it
 * is, a fencing's default_transaction_read_only included: harmless on a standby, and pgfloat
 * resets it when it promotes the node.
 */
function configureStandby(server: LocalServer, primary: NodeAddress, ctx: ManagementContext, progress: Progress): void {
  const settings: Array<[string, string | number]> = [
    ['port', server.port],
    ['cluster_name', server.name],
    [
      'primary_conninfo',
      conninfo({
        host: primary.host,
        port: String(primary.port),
        user: ctx.replication.user,
        ...(ctx.replication.password !== '' && { password: ctx.replication.password }),
        application_name: server.name,
        // Read by the standby's own WAL receiver, running as the data directory's owner: it must be able to read these files.
        ...libpqConninfo(policyOf(primary)),
      }),
    ],
    // A slot named in the copied files belongs to the other node's former upstream, and a missing slot stops streaming.
    ['primary_slot_name', ''],
  ];
  progress(`configuring ${server.name} as a standby of ${primary.name}: standby.signal, primary_conninfo (sslmode ${policyOf(primary).mode}), port ${server.port}, cluster_name ${server.name}`);
  const autoConf = join(server.dataDir, 'postgresql.auto.conf');
  const existing = existsSync(autoConf) ? readFileSync(autoConf, 'utf8') : '# Do not edit this file manually!\n';
  writeFileSync(autoConf, withSettings(existing, settings, `set by pgfloat: ${server.name} rejoined as a standby of ${primary.name}`), { mode: 0o600 });
  server.chownToOwner(autoConf);
  const signal = join(server.dataDir, 'standby.signal');
  if (!existsSync(signal)) {
    writeFileSync(signal, '', { mode: 0o600 });
    server.chownToOwner(signal);
  }
}

/** `text` without its lines for `settings`' keys, then those settings in a block of their own. */
export function withSettings(text: string, settings: ReadonlyArray<readonly [string, string | number]>, title: string): string {
  const keys = new Set(settings.map(([k]) => k.toLowerCase()));
  const kept = text.split('\n').filter((line) => {
    const key = /^\s*([A-Za-z0-9_.]+)\s*=?/.exec(line)?.[1]?.toLowerCase();
    return key === undefined || !keys.has(key);
  });
  const body = kept.join('\n').replace(/\n*$/, '\n');
  return `${body}# ${title}\n${settings.map(([k, v]) => `${k} = ${confValue(v)}`).join('\n')}\n`;
}

/** A postgresql.conf literal: backslashes are escapes there too, quotes are doubled. */
function confValue(v: string | number): string {
  return typeof v === 'number' ? String(v) : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** A libpq key=value connection string with every value quoted. */
export function conninfo(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}='${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`)
    .join(' ');
}

/** pg_rewind's lines worth showing: a crash recovery it ran, where the servers diverged, or that nothing was to be done. */
function rewindSummary(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.replace(/^pg_rewind:\s*/, '').trim())
    .filter((l) => /crash recovery|diverged at|no rewind required|rewinding from/i.test(l));
  return lines.length > 0 ? lines.join('; ') : lastLine(output);
}

/** The reason in a failed pg_rewind's error: its "error:" lines, else its last line. */
function rewindFailure(message: string): string {
  const errors = message
    .split('\n')
    .filter((l) => /pg_rewind: (error|fatal)/i.test(l))
    .map((l) => l.replace(/^pg_rewind:\s*(error|fatal):\s*/i, '').trim());
  return errors.length > 0 ? errors.join('; ') : lastLine(message);
}
