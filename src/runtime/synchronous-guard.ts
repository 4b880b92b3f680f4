// Keeps a new primary writable under synchronous replication: lifts synchronous_standby_names while it runs alone, puts it back once a standby streams.

import type { Client } from 'pg';
import type { Logger } from '../log';
import type { ServerAdmin } from '../postgres/server-admin';
import type { NodeAddress } from '../cluster/node';
import type { LiftedSynchronous } from '../cluster/state';

/** How often a lifted synchronous_standby_names is checked for restoring. */
const CHECK_MS = 1000;

/** The primary to check, and what was lifted on it; undefined when there is nothing to check (or this instance does not decide). */
export type SynchronousCheck = () => { primary: NodeAddress; lifted: LiftedSynchronous } | undefined;

/**
 * With synchronous_standby_names set, a freshly promoted primary has no standby to confirm its
 * commits until its old primary rejoins, so every write would wait. pgfloat lifts the setting
 * (ALTER SYSTEM SET synchronous_standby_names = '') right after the promotion, unless
 * failover.keepSynchronousWhenAlone asks to keep it, and restores it as soon as enough of the
 * standbys it names stream from the new primary. Nothing acknowledged before the failover is at
 * risk: those commits were on the standby that was promoted. The record of what was lifted lives
 * in the cluster state (through the failover core), so a restarted pgfloat, or another instance
 * that decides next, puts it back.
 */
export class SynchronousGuard {
  private checking = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly admin: ServerAdmin,
    private readonly keepWhenAlone: boolean,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * Right after `node` left recovery with `names` as its synchronous_standby_names, before it
   * takes writes. Resolves with the record the cluster should keep from now on.
   */
  async afterPromotion(node: NodeAddress, names: string, current: LiftedSynchronous | undefined): Promise<LiftedSynchronous | undefined> {
    if (names === '') {
      // Its configuration came from a primary whose setting was lifted (pg_rewind copies it): the
      // record now describes this node.
      return current === undefined ? undefined : { ...current, node: node.name };
    }
    if (this.keepWhenAlone) {
      this.log.warn({ node: node.name, names }, 'synchronous replication kept on the new primary (failover.keepSynchronousWhenAlone): commits wait until a standby streams from it');
      return undefined;
    }
    return this.admin.session(node, this.timeoutMs, async (client) => {
      const source = await client.query<{ sourcefile: string | null }>(
        "SELECT sourcefile FROM pg_file_settings WHERE name = 'synchronous_standby_names' AND applied",
      );
      const sourceFile = source.rows[0]?.sourcefile ?? null;
      await client.query("ALTER SYSTEM SET synchronous_standby_names = ''");
      await client.query('SELECT pg_reload_conf()');
      this.log.warn({ node: node.name, names }, 'synchronous replication lifted on the new primary until a standby streams from it');
      return { node: node.name, names, sourceFile: sourceFile?.endsWith('postgresql.auto.conf') ? null : sourceFile, since: new Date().toISOString() };
    });
  }

  /** Checks every second what `source` names; `onSetAgain` hears of a primary whose setting is back. */
  watch(source: SynchronousCheck, onSetAgain: (node: string) => void): void {
    this.timer = setInterval(() => {
      const target = source();
      if (target === undefined) return;
      void this.check(target.primary, target.lifted).then((setAgain) => {
        if (setAgain) onSetAgain(target.primary.name);
      });
    }, CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Puts a lifted setting back on `primary` once the standbys it names stream. Resolves true when
   * the setting is set again (by pgfloat now, or by an operator meanwhile): the record may go.
   */
  async check(primary: NodeAddress, lifted: LiftedSynchronous): Promise<boolean> {
    if (this.checking) return false;
    this.checking = true;
    try {
      return await this.admin.session(primary, this.timeoutMs, async (client) => {
        if ((await currentNames(client)) !== '') {
          // Someone set it meanwhile (an operator, or an older record): theirs stands.
          this.log.info({ node: primary.name, lifted: lifted.names }, 'synchronous_standby_names is set again; dropping the record of the lifted value');
          return true;
        }
        const { rows } = await client.query<{ name: string }>("SELECT application_name AS name FROM pg_stat_replication WHERE state = 'streaming'");
        const streaming = rows.map((r) => r.name);
        if (!coversEnough(lifted.names, streaming)) return false;
        if (lifted.sourceFile !== null) await client.query('ALTER SYSTEM RESET synchronous_standby_names');
        else await client.query(`ALTER SYSTEM SET synchronous_standby_names = ${client.escapeLiteral(lifted.names)}`);
        await client.query('SELECT pg_reload_conf()');
        this.log.info({ node: primary.name, names: lifted.names, streaming }, 'synchronous replication restored: a standby streams from the primary again');
        return true;
      });
    } catch (err) {
      this.log.warn({ node: primary.name, err: (err as Error).message }, 'could not check whether to restore synchronous replication; will retry');
      return false;
    } finally {
      this.checking = false;
    }
  }
}

async function currentNames(client: Client): Promise<string> {
  const { rows } = await client.query<{ names: string }>("SELECT current_setting('synchronous_standby_names') AS names");
  return rows[0]?.names.trim() ?? '';
}

/**
 * Whether the streaming standbys satisfy a synchronous_standby_names value: `*`, `a, b`,
 * `FIRST 2 (a, b, c)`, `ANY 1 ("a", b)`. Names compare case-insensitively unless quoted, as in
 * PostgreSQL's own matching.
 */
export function coversEnough(spec: string, streaming: readonly string[]): boolean {
  const match = /^\s*(?:(?:FIRST|ANY)\s+)?(\d+)\s*\((.*)\)\s*$/is.exec(spec);
  const needed = match ? Number(match[1]) : 1;
  const list = (match ? match[2]! : spec)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const matches = (name: string): boolean =>
    list.some((entry) => entry === '*' || (entry.startsWith('"') ? entry.slice(1, -1) === name : entry.toLowerCase() === name.toLowerCase()));
  return streaming.filter(matches).length >= needed;
}
