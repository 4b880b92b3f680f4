// Keeps a new primary writable under synchronous replication: lifts synchronous_standby_names while it runs alone, puts it back once a standby streams.

import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Client } from 'pg';
import type { Logger } from '../log';
import type { BackendNode } from '../proxy/session';
import type { NodeAdmin } from './node-admin';

/** What was lifted, and where: kept in a file beside the cluster state so a restarted pgfloat puts it back. */
export interface LiftedSynchronous {
  /** The node it was lifted on (the current primary, as far as this record knows). */
  node: string;
  /** synchronous_standby_names as it was. */
  names: string;
  /** The configuration file it came from, so restoring can fall back to it; null for postgresql.auto.conf. */
  sourceFile: string | null;
  since: string;
}

/**
 * With synchronous_standby_names set, a freshly promoted primary has no standby to confirm its
 * commits until its old primary rejoins, so every write would wait. pgfloat lifts the setting
 * (ALTER SYSTEM SET synchronous_standby_names = '') right after the promotion, unless
 * failover.keepSynchronousWhenAlone asks to keep it, and restores it as soon as enough of the
 * standbys it names stream from the new primary. Nothing acknowledged before the failover is at
 * risk: those commits were on the standby that was promoted.
 */
export class SynchronousGuard {
  private lifted: LiftedSynchronous | undefined;
  private checking = false;

  constructor(
    private readonly admin: NodeAdmin,
    private readonly file: string,
    private readonly keepWhenAlone: boolean,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  async load(): Promise<void> {
    try {
      this.lifted = JSON.parse(await readFile(this.file, 'utf8')) as LiftedSynchronous;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error({ file: this.file, err: (err as Error).message }, 'cannot read the lifted synchronous_standby_names record; ignoring it');
    }
  }

  status(): LiftedSynchronous | undefined {
    return this.lifted;
  }

  /** Right after `node` left recovery with `names` as its synchronous_standby_names, before it takes writes. */
  async afterPromotion(node: BackendNode, names: string): Promise<void> {
    if (names === '') {
      // Its configuration came from a primary whose setting was lifted (pg_rewind copies it): the
      // record now describes this node.
      if (this.lifted !== undefined && this.lifted.node !== node.name) await this.save({ ...this.lifted, node: node.name });
      return;
    }
    if (this.keepWhenAlone) {
      this.log.warn({ node: node.name, names }, 'synchronous replication kept on the new primary (failover.keepSynchronousWhenAlone): commits wait until a standby streams from it');
      return;
    }
    await this.admin.session(node, this.timeoutMs, async (client) => {
      const source = await client.query<{ sourcefile: string | null }>(
        "SELECT sourcefile FROM pg_file_settings WHERE name = 'synchronous_standby_names' AND applied",
      );
      const sourceFile = source.rows[0]?.sourcefile ?? null;
      await client.query("ALTER SYSTEM SET synchronous_standby_names = ''");
      await client.query('SELECT pg_reload_conf()');
      await this.save({ node: node.name, names, sourceFile: sourceFile?.endsWith('postgresql.auto.conf') ? null : sourceFile, since: new Date().toISOString() });
      this.log.warn({ node: node.name, names }, 'synchronous replication lifted on the new primary until a standby streams from it');
    });
  }

  /** Puts a lifted setting back on `primary` once the standbys it names stream; cheap when nothing is lifted. */
  async check(primary: BackendNode | undefined): Promise<void> {
    const lifted = this.lifted;
    if (lifted === undefined || primary === undefined || this.checking) return;
    this.checking = true;
    try {
      await this.admin.session(primary, this.timeoutMs, async (client) => {
        if ((await currentNames(client)) !== '') {
          // Someone set it meanwhile (an operator, or an older record): theirs stands.
          this.log.info({ node: primary.name, lifted: lifted.names }, 'synchronous_standby_names is set again; dropping the record of the lifted value');
          return this.save(undefined);
        }
        const { rows } = await client.query<{ name: string }>("SELECT application_name AS name FROM pg_stat_replication WHERE state = 'streaming'");
        const streaming = rows.map((r) => r.name);
        if (!coversEnough(lifted.names, streaming)) return;
        if (lifted.sourceFile !== null) await client.query('ALTER SYSTEM RESET synchronous_standby_names');
        else await client.query(`ALTER SYSTEM SET synchronous_standby_names = ${client.escapeLiteral(lifted.names)}`);
        await client.query('SELECT pg_reload_conf()');
        await this.save(undefined);
        this.log.info({ node: primary.name, names: lifted.names, streaming }, 'synchronous replication restored: a standby streams from the primary again');
      });
    } catch (err) {
      this.log.warn({ node: primary.name, err: (err as Error).message }, 'could not check whether to restore synchronous replication; will retry');
    } finally {
      this.checking = false;
    }
  }

  private async save(next: LiftedSynchronous | undefined): Promise<void> {
    this.lifted = next;
    if (next === undefined) {
      await unlink(this.file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      return;
    }
    await mkdir(dirname(this.file), { recursive: true });
    const temp = `${this.file}.${randomUUID()}.tmp`;
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(next, null, 2) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, this.file);
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
