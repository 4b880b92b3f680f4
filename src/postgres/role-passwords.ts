// The auth query (sessions.authQuery) for moving sessions: a role's stored verifier or md5 hash, asked as the monitor role.

import type { NodeAddress } from '../cluster/node';
import { withAdminSession, type AdminCredentials, type SessionLimits } from './admin-session';

/** A switchover moves many sessions of few roles at once: one query per role serves them all. */
const KEEP_MS = 10_000;

export class RolePasswords {
  private readonly recent = new Map<string, { at: number; answer: Promise<string | null> }>();

  constructor(
    private readonly nodes: ReadonlyMap<string, NodeAddress>,
    private readonly credentials: AdminCredentials,
    private readonly query: string,
    private readonly limits: SessionLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** The first column of the query's first row for `user`, asked of `node`; null when there is no row or no password. */
  lookup(user: string, node: string): Promise<string | null> {
    const now = this.now();
    for (const [name, entry] of this.recent) if (now - entry.at > KEEP_MS) this.recent.delete(name);
    const kept = this.recent.get(user);
    if (kept !== undefined) return kept.answer;
    const address = this.nodes.get(node);
    if (address === undefined) return Promise.reject(new Error(`unknown node ${node}`));
    const answer = withAdminSession(address, this.credentials, this.limits, async (client) => {
      const { rows } = await client.query<unknown[]>({ text: this.query, values: [user], rowMode: 'array' });
      const value = rows[0]?.[0];
      return typeof value === 'string' ? value : null;
    });
    // A failed query is not kept: the next session asks again.
    answer.catch(() => this.recent.delete(user));
    this.recent.set(user, { at: now, answer });
    return answer;
  }
}
